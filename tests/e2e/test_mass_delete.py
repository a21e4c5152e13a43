#!/usr/bin/env python3
"""A backfill does not mark most of the mirror deleted on its own say-so.

refused: 500 calls mirrored; the API then lists only 100 of them (400 deleted: an API
  bug, a changed filter and another account look exactly the same). `backfill` exits 65
  with a message saying how many and why and how to confirm; nothing is marked; its
  sync_runs row is 'failed' with the message; `status` shows the refusal; no backfill is
  left pending. `run` then makes incremental passes and does not re-read the whole list
  before full_resync_interval. `once --allow-mass-delete` is a usage error (64). Then
  `backfill --allow-mass-delete` marks the 400, and the refusal is gone from `status`.
small: a deletion within max_delete_fraction (or under the floor of 10 calls) is marked
  without asking.

Each in both orders."""

import harness as h
from harness import check

N, KEEP, PAGE = 500, 100, 50


def deleted_count(c):
    return int(c.scalar("select count(*) from vozagent.calls where deleted_at is not null"))


def refused(order):
    with h.Case("mass_delete", order=order, seed=81, calls=N, page_size=PAGE,
                env={"VOZAGENT_POLL_INTERVAL": "1s",
                     "VOZAGENT_FULL_RESYNC_INTERVAL": "1h"}) as c:
        c.expect_rc(c.run("backfill"), 0, "first backfill")
        c.assert_exact("after the first backfill")
        gone = c.sim.delete(count=N - KEEP)
        check(len(gone) == N - KEEP, "test data: deleted %d" % len(gone))

        r = c.run("backfill")
        c.expect_rc(r, 65, "backfill that would mark 400 of 500 deleted")
        want = ("would mark %d of %d live calls deleted (80%%, more than max_delete_fraction "
                "10%%): nothing marked" % (N - KEEP, N))
        check(want in r.err and "--allow-mass-delete" in r.err,
              "the refusal does not say how many and how to confirm:\n%s" % h.tail(r.err))
        # the daemon gives the source back between passes: --wait, not stopping the
        # service (which a template instance would not even be named as)
        check("backfill --wait --allow-mass-delete" in r.err and "systemctl" not in r.err,
              "the refusal does not say to confirm with backfill --wait:\n%s" % h.tail(r.err))
        check(deleted_count(c) == 0, "%d calls marked deleted by a refused backfill"
              % deleted_count(c))
        run = c.last_run()
        check(run["mode"] == "backfill" and run["outcome"] == "failed" and
              want in (run["error"] or ""), "sync_runs row of the refusal: %s / %s"
              % (run["outcome"], run["error"]))
        st = c.sync_state()
        check(st["backfill_offset"] is None, "a backfill is left pending after the refusal "
              "(backfill_offset %s): run would re-read the list every pass"
              % st["backfill_offset"])
        s = c.run("status")
        c.expect_rc(s, 0, "status")
        check("REFUSED" in s.out and want in s.out, "status does not show the refusal:\n%s"
              % s.out)

        # run: incremental passes only, until full_resync_interval has passed
        refused_id = int(run["id"])
        seq = c.sim.last_seq()
        p = c.spawn("run")
        c.wait_for("three passes of run", lambda: p.poll() is not None or
                   len([x for x in c.sync_runs() if int(x["id"]) > refused_id and
                        x["outcome"] == "ok"]) >= 3, timeout=60)
        h.terminate(p)
        c.expect_rc(c.wait(p, 20), 0, "run after SIGTERM")
        later = [x for x in c.sync_runs() if int(x["id"]) > refused_id]
        check(not [x for x in later if x["mode"] == "backfill"],
              "run made a backfill pass again right after the refusal: %s"
              % [(x["id"], x["mode"], x["outcome"]) for x in later])
        # the in-progress list and the contact scans of calls that left it aside, each
        # pass reads the tail of the main list only
        main = [x for x in h.api_log_since(c.sim.requests(), seq)
                if "contact_id" not in x["params"] and "status" not in x["params"]]
        check(len(main) <= 3 * len(later), "run's %d passes made %d requests to the main "
              "list: they re-read it" % (len(later), len(main)))
        check(deleted_count(c) == 0, "calls marked deleted by run after the refusal")

        c.expect_rc(c.run("once", "--allow-mass-delete"), 64, "--allow-mass-delete with once")
        r = c.run("backfill", "--allow-mass-delete")
        c.expect_rc(r, 0, "backfill --allow-mass-delete")
        check(deleted_count(c) == N - KEEP, "%d calls marked deleted after the confirmation, "
              "expected %d" % (deleted_count(c), N - KEEP))
        check(int(c.last_run()["marked_deleted"]) == N - KEEP, "marked_deleted: %s"
              % c.last_run()["marked_deleted"])
        c.assert_exact("after the confirmed backfill")
        s = c.run("status")
        check("REFUSED" not in s.out, "status still shows the refusal:\n%s" % s.out)


def small(order):
    with h.Case("small_delete", order=order, seed=82, calls=N, page_size=PAGE) as c:
        c.expect_rc(c.run("backfill"), 0, "first backfill")
        c.sim.delete(count=N // 10)
        c.expect_rc(c.run("backfill"), 0, "backfill marking 10%")
        check(deleted_count(c) == N // 10, "%d marked" % deleted_count(c))
        c.assert_exact("after a deletion of 10%")
    with h.Case("floor_delete", order=order, seed=83, calls=20, page_size=PAGE) as c:
        c.expect_rc(c.run("backfill"), 0, "first backfill")
        c.sim.delete(count=8)
        c.expect_rc(c.run("backfill"), 0, "backfill marking 8 of 20 (under the floor)")
        check(deleted_count(c) == 8, "%d marked" % deleted_count(c))
        c.assert_exact("after a small deletion from a small mirror")


if __name__ == "__main__":
    h.main(h.both_orders(refused, "mass deletion refused, then confirmed") +
           h.both_orders(small, "small deletions marked"))
