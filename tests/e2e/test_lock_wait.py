#!/usr/bin/env python3
"""lock_wait: `backfill --wait` (what the backfill timer runs) next to a running daemon of
the same source, in both orders. Started while the daemon's first pass holds the source,
it logs once that it waits, then runs when the daemon gives the source back between
passes, and exits 0. No two passes of the source overlap in time (sync_runs), the mirror
is exact, and the daemon goes on syncing afterwards. Without --wait, a `once` still exits
75 at once while the source is busy.

starve: the daemon's passes take longer than its poll_interval, so it gives the source back
and takes it again in the same turn of its loop; `backfill --wait` must still get it (it
waits in PostgreSQL's lock queue, which hands it the lock at the daemon's next unlock; a
try-lock polled between passes never lands). Its pass and the daemon's do not overlap, the
mirror is exact, the daemon goes on. Then, with the lock held by a test session: the waits
show in pg_locks as ungranted advisory locks; a SIGTERM during one exits 75 promptly (the
statement is cancelled); the backfill says so in STATUS= at once, and sends READY=1 (which arms its unit's watchdog) only
once it has the source, then finishes. The lock does not depend on the API's order, so
this runs in one order."""

import os
import subprocess
import time

import harness as h
from harness import check
from notifysock import NotifySocket


# pg_locks shows every database's locks; other tests may run on the cluster at once
THIS_DB = "database = (select oid from pg_database where datname = current_database())"


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


def no_overlap(c):
    runs = sorted(c.sync_runs(), key=lambda x: x["started_at"])
    spans = [(h.parse_instant(x["started_at"]), h.parse_instant(x["finished_at"]),
              x["mode"], x["outcome"]) for x in runs]
    for a, b in zip(spans, spans[1:]):
        check(a[1] is not None and a[1] <= b[0],
              "two passes of the source overlap: %s and %s" % (a, b))
    return spans


def starve():
    with h.Case("starve", seed=5, calls=200, page_size=10,
                env={"VOZAGENT_POLL_INTERVAL": "1s",
                     "VOZAGENT_FULL_RESYNC_INTERVAL": "0"}) as c:
        c.expect_rc(c.run("backfill"), 0, "the first backfill")

        c.sim.config(delay_ms=300)
        p = c.spawn("run")
        c.wait_for("three passes of the daemon", lambda: p.poll() is not None or
                   sum(1 for x in c.sync_runs() if x["outcome"] == "ok") >= 4, timeout=60)
        check(p.poll() is None, "the daemon exited (%s)" % p.returncode)
        spans = [s for s in no_overlap(c) if s[2] == "incremental" and s[3] == "ok"]
        check(spans and all((s[1] - s[0]).total_seconds() >= 1 for s in spans),
              "test timing: the daemon's passes must take longer than its poll_interval: %s"
              % [(s[1] - s[0]).total_seconds() for s in spans])

        b = c.run("backfill", "--wait", timeout=120)
        c.expect_rc(b, 0, "backfill --wait next to a daemon that is always busy")
        c.sim.config(delay_ms=0)
        c.sim.add(count=5)
        c.sim.finish(count=3)
        c.wait_exact("the daemon goes on after the backfill", proc=p)
        h.terminate(p)
        c.expect_rc(c.wait(p, 15), 0, "the daemon, stopped by SIGTERM")
        spans = no_overlap(c)
        full = [s for s in spans if s[2] == "backfill" and s[3] == "ok"]
        check(len(full) == 2, "expected two ok backfills: %s" % [(s[2], s[3]) for s in spans])
        check(any(s[2] == "incremental" and s[0] > full[-1][1] for s in spans),
              "no pass of the daemon after the backfill")
        c.assert_exact("at the end")

        # the source held by another session: the waiters queue in PostgreSQL
        holder = subprocess.Popen([c.pg.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  env=c.pg.env(c.db), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL)
        ns = NotifySocket(c.tmp)
        try:
            holder.stdin.write(("select pg_advisory_lock(1450801729, hashtext('%s'));\n"
                                % c.source).encode())
            holder.stdin.flush()
            c.wait_for("the test session to hold the source's lock", lambda: c.scalar(
                "select count(*) from pg_locks where locktype = 'advisory' and granted "
                "and objid = hashtext('%s')::oid and %s" % (c.source, THIS_DB)) == "1", timeout=20)
            b = c.spawn("backfill", "--wait", env={"NOTIFY_SOCKET": ns.path})
            w = c.spawn("once", "--wait")
            c.wait_for("both waiters to queue for the lock in PostgreSQL", lambda:
                       w.poll() is not None or b.poll() is not None or
                       c.scalar("select count(*) from pg_locks where locktype = 'advisory' "
                                "and not granted and " + THIS_DB) == "2", timeout=20)
            check(w.poll() is None and b.poll() is None, "a waiter exited (%s, %s):\n%s"
                  % (b.returncode, w.returncode, read_err(c, w) + read_err(c, b)))
            h.terminate(w)
            c.expect_rc(c.wait(w, 20), 75, "once --wait stopped by SIGTERM while it waits")
            # the backfill unit's watchdog arms at READY=1: only once the wait is over
            check(not ns.count("READY"), "READY=1 before the backfill has the source: %s"
                  % ns.since())
            check(any("Waiting" in m[1].get("STATUS", "") for m in ns.since()),
                  "no STATUS= says the backfill waits: %s" % ns.since())
            holder.stdin.close()
            holder.wait(30)
            ns.wait_key("READY", proc=None, timeout=30)
            c.expect_rc(c.wait(b, 60), 0, "backfill --wait once the source is free")
            c.assert_exact("after the last backfill")
        finally:
            ns.close()
            if holder.poll() is None:
                holder.stdin.close()
                holder.wait(30)

if __name__ == "__main__":
    h.main(h.both_orders(lock_wait, "backfill --wait next to run") +
           [("starve", starve)])
