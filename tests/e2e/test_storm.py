#!/usr/bin/env python3
"""A backfill that exits 0 leaves the mirror equal to the API, however many interrupted
commands came before it - for edits and deletions too.

storm: 30 `kill -9`s of `backfill` or `once` at random moments while the list changes
  under them (new, late, finished, edited old and deleted calls, after every second
  request) and 5% of requests fail; then, if the storm left no backfill pending past
  offset 0, one more `backfill` is killed once it has committed a page, so the final one
  always resumes mid-list (and must re-read the part before it); then the list stops
  changing and one `backfill` runs
  to completion and exits 0: the mirror is compared field by field with the simulator's
  live list (calls the API no longer lists must be marked deleted, edited calls must
  hold the edit, wherever in the list the interrupted commands had read them); then a
  `once` exits 0 and the mirror is still exact.

max_delete_fraction is raised to 50% here: the test is about what the completing
backfill reads, not about the mass-deletion guard (the storm deletes a few percent).

Seeded, in both orders: E2E_SEED=N replays a seed, E2E_ORDER picks one order."""

import random
import signal
import time

import harness as h
from harness import check

KILLS = 30
N, PAGE = 1000, 50


def pending_offset(c):
    st = c.sync_state()
    return st["backfill_offset"] if st else None


def leave_backfill_pending(c):
    """Kills a backfill after its first committed page: a pending one past offset 0.
    Returns how many it started."""
    for tries in range(5):
        if pending_offset(c) not in (None, 0):
            return tries
        # a commit per page (a batch holds one), so the kill can land after the first
        p = c.spawn("backfill", env={"VOZAGENT_BATCH_ROWS": "1"})
        c.wait_for("a committed backfill page", lambda: p.poll() is not None or
                   pending_offset(c) not in (None, 0), timeout=60, interval=0.02)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        r = c.wait(p, 20)
        check(r.rc in (0, 75, -signal.SIGKILL), "backfill exited %s:\n%s"
              % (r.rc, h.tail(r.err)))
    return 5


def storm(order, seed):
    rng = random.Random(seed)
    with h.Case("storm", order=order, seed=seed, calls=0, page_size=PAGE,
                env={"VOZAGENT_MAX_DELETE_FRACTION": "50%"}) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=N, in_progress_recent=60, in_progress_stuck=4)
        c.sim.mutator(seed=seed, every=2, per=1,
                      kinds={"new": 1, "late": 1, "finish": 1, "delete": 1, "update_old": 1})
        c.sim.faults(rate=0.05, seed=seed)
        # several pages in flight read the list fast: slow enough pages that most kills
        # land mid-command
        c.sim.config(delay_ms=250)
        killed = 0
        for i in range(KILLS):
            cmd = rng.choice(("backfill", "backfill", "once"))
            nreq = c.sim.state()["requests"]
            p = c.spawn(cmd)
            # the random moment is counted from its first request, so a slow start (a
            # sanitizer, a loaded machine) does not make every kill land before any page
            c.wait_for("the first request of %s" % cmd, lambda: p.poll() is not None or
                       c.sim.state()["requests"] > nreq, timeout=30, interval=0.02)
            time.sleep(rng.uniform(0.0, 1.0))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                killed += 1
            r = c.wait(p, 20)
            check(r.rc in (0, 75, -signal.SIGKILL), "%s exited %s:\n%s"
                  % (cmd, r.rc, h.tail(r.err)))
        # slower pages, so the kill lands after the first page and long before the end
        c.sim.config(delay_ms=200)
        extra = leave_backfill_pending(c)
        c.sim.config(delay_ms=250)
        rep = c.sim.mutator(off=True)
        offset = pending_offset(c)
        h.log("storm: %d of %d commands killed; %d mutations %s; backfill_offset %s (after "
              "%d more backfill(s) killed for it)"
              % (killed, KILLS, rep["total"], rep["counts"], offset, extra))
        check(offset not in (None, 0), "test data: no backfill is pending past offset 0 "
              "(backfill_offset %s): the final backfill would not resume" % offset)
        check(killed >= KILLS // 2, "test data: only %d commands were killed" % killed)
        check(rep["counts"].get("delete", 0) > 0 and rep["counts"].get("update_old", 0) > 0,
              "test data: the storm deleted or edited nothing: %s" % rep["counts"])
        c.sim.config(delay_ms=0)
        r = c.run("backfill", timeout=300)
        c.expect_rc(r, 0, "the backfill after the storm")
        c.assert_exact("after the storm and a complete backfill")
        c.expect_rc(c.run("once", timeout=300), 0, "once after it")
        c.assert_exact("after the storm, a complete backfill and a once")
        h.log("storm[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(storm, "kill -9 storm, then a backfill", 3501))
