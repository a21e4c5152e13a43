#!/usr/bin/env python3
"""lock_wait: `backfill --wait` (what the backfill timer runs) next to a running daemon of
the same source, in both orders. Started while the daemon's first pass holds the source,
it logs once that it waits, then runs when the daemon gives the source back between
passes, and exits 0. No two passes of the source overlap in time (sync_runs), the mirror
is exact, and the daemon goes on syncing afterwards. Without --wait, a `once` still exits
75 at once while the source is busy."""

import os
import time

import harness as h
from harness import check


def read_err(c, p):
    with open(os.path.join(c.tmp, "bin%d.err" % p.e2e_n), encoding="utf-8",
              errors="replace") as f:
        return f.read()


def lock_wait(order):
    with h.Case("lock_wait", order=order, seed=77, calls=300, page_size=10) as c:
        c.sim.config(delay_ms=100)
        # one page at a time, so that its first pass is still running when the others come
        p = c.spawn("run", env={"VOZAGENT_POLL_INTERVAL": "1s", "VOZAGENT_CONCURRENCY": "1",
                                "VOZAGENT_BATCH_ROWS": "1"})
        c.wait_for("the daemon's first pass to commit pages",
                   lambda: p.poll() is not None or c.count_calls() >= 30, timeout=30)
        check(p.poll() is None, "the daemon exited (%s)" % p.returncode)
        c.sim.config(delay_ms=1000)

        r = c.run("once", timeout=30)
        c.expect_rc(r, 75, "once without --wait while the daemon's pass runs")

        b = c.spawn("backfill", "--wait")
        c.wait_for("the backfill to say it waits", lambda: b.poll() is not None or
                   "waiting for it to finish" in read_err(c, b), timeout=20)
        check(b.poll() is None, "backfill --wait exited (%s) instead of waiting:\n%s"
              % (b.returncode, read_err(c, b)))
        c.sim.config(delay_ms=0)
        rb = c.wait(b, 60)
        c.expect_rc(rb, 0, "backfill --wait")
        check(rb.err.count("waiting for it to finish") == 1,
              "the backfill does not log exactly once that it waits:\n%s" % h.tail(rb.err))
        c.assert_exact("after the backfill")

        c.sim.add(count=6)
        c.sim.finish(count=3)
        c.wait_exact("the daemon goes on after the backfill", proc=p)
        h.terminate(p)
        c.expect_rc(c.wait(p, 15), 0, "the daemon, stopped by SIGTERM")

        runs = sorted(c.sync_runs(), key=lambda x: x["started_at"])
        spans = [(h.parse_instant(x["started_at"]), h.parse_instant(x["finished_at"]),
                  x["mode"], x["outcome"]) for x in runs]
        for a, b2 in zip(spans, spans[1:]):
            check(a[1] is not None and a[1] <= b2[0],
                  "two passes of the source overlap: %s and %s" % (a, b2))
        full = [s for s in spans if s[2] == "backfill" and s[3] == "ok"]
        check(len(full) >= 2, "expected the daemon's first pass and the waiting backfill "
              "as two ok backfills, got %s" % [(s[2], s[3]) for s in spans])
        check(any(s[2] == "incremental" and s[0] > full[-1][1] for s in spans),
              "no pass of the daemon after the backfill")
        c.assert_exact("at the end")


if __name__ == "__main__":
    h.main(h.both_orders(lock_wait, "backfill --wait next to run"))
