#!/usr/bin/env python3
"""Quiet when nothing changed (issue 3, guarantee 8), seeded, in both orders.

A mirror of 1,500 calls (with running and stuck calls, so a pass scans the in-progress
list and a contact) is backfilled. Control: after 3 new calls and 2 finished ones, a
`once` shows up in pg_stat_user_tables as 3 inserts and 2 updates of vozagent.calls -
the statistics are read correctly. Then, over unchanged data, a `once` and a `backfill`
leave n_tup_ins / n_tup_upd / n_tup_del of vozagent.calls unchanged, and every row's
xmin and updated_at unchanged. Each reading waits until the daemon's session is gone (a
backend reports its statistics when it exits, at the latest) and until the pass's own
sync_runs row shows in the statistics of vozagent.sync_runs, so a pass that had written
calls could not hide behind a late report.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import random
import time

import harness as h
from harness import check

N, PAGE = 1500, 50


def stats_after_pass(c, runs_ins_before):
    """Statistics of vozagent.calls once the pass that just ended has reported (its
    sync_runs insert is counted)."""
    h.wait_daemon_sessions_gone(c.pg, c.db)
    deadline = time.monotonic() + h.scaled(10)
    while True:
        runs_ins = h.table_writes(c.pg, c.db, "sync_runs")[0]
        if runs_ins > runs_ins_before:
            return h.table_writes(c.pg, c.db, "calls"), runs_ins
        check(time.monotonic() < deadline, "the pass's statistics never showed up "
              "(sync_runs inserts still %d)" % runs_ins)
        time.sleep(0.1)


def quiet(order, seed):
    rng = random.Random(seed)
    with h.Case("quiet", order=order, seed=seed, calls=0, page_size=PAGE) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=N, in_progress_recent=40, in_progress_stuck=3)
        c.expect_rc(c.run("backfill"), 0, "backfill")
        c.expect_rc(c.run("once"), 0, "once")
        s0, runs_ins = stats_after_pass(c, 0)

        # control: the statistics do show what a pass writes
        c.sim.add(count=3, in_progress=0)
        stuck = sorted((x for x in c.sim.calls() if x["call_status"] == "in-progress"),
                       key=h.started_us)
        c.sim.finish(ids=[stuck[0]["id"], rng.choice(stuck[1:])["id"]])
        c.expect_rc(c.run("once"), 0, "once after 3 new and 2 finished calls")
        c.assert_exact("after the changes")
        s1, runs_ins = stats_after_pass(c, runs_ins)
        delta = tuple(b - a for a, b in zip(s0, s1))
        h.log("control: vozagent.calls ins/upd/del %s -> %s (delta %s)" % (s0, s1, delta))
        check(delta == (3, 2, 0), "the control pass (3 new, 2 finished) shows as %s "
              "inserts/updates/deletes in pg_stat_user_tables" % (delta,))

        for cmd in ("once", "backfill"):
            versions = c.row_versions()
            seq0 = c.sim.last_seq()
            c.expect_rc(c.run(cmd), 0, "%s over unchanged data" % cmd)
            s2, runs_ins = stats_after_pass(c, runs_ins)
            reqs = h.api_log_since(c.sim.requests(), seq0)
            h.log("%s over unchanged data (%d requests, %d records): ins/upd/del %s -> %s"
                  % (cmd, len(reqs), sum(x["returned"] or 0 for x in reqs), s1, s2))
            check(s2 == s1, "%s over unchanged data wrote vozagent.calls: n_tup_ins/upd/del "
                  "%s -> %s" % (cmd, s1, s2))
            after = c.row_versions()
            changed = [k for k in versions if versions[k] != after.get(k)]
            check(not changed and len(after) == len(versions),
                  "%s over unchanged data rewrote %d rows (xmin/updated_at), e.g. %s"
                  % (cmd, len(changed), changed[:5]))
            run = c.last_run()
            check((run["inserted"], run["updated"], run["marked_deleted"]) == (0, 0, 0),
                  "%s over unchanged data: sync_runs %s" % (cmd, run))
            s1 = s2
        c.assert_exact("at the end")
        h.log("quiet[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(quiet, "quiet over unchanged data", 3601))
