#!/usr/bin/env python3
"""The concurrent pipeline - several pages in flight, several pages per commit, commits on
the writer thread while the next pages download - under live mutation, faults, kill -9 and
a PostgreSQL restart, seeded, in both orders, each compared field by field with the
simulator.

Every scenario runs with PIPE: concurrency 16 and batch_rows 60 with page_size 20, so a
commit holds three pages and is nearly always in flight while pages are read.

mutation: a backfill under the mutator (new, late, finished and deleted calls after every
  request, deletions often within a page of the position), then a quiet `once` and a quiet
  `backfill`: the mirror is exact; the simulator answered more than one request at once;
  the deletions that shifted the list were caught (drift_rereads > 0).
faults: a backfill under a 10% fault rate (429, 5xx, resets, cut and bad bodies): exact,
  each call inserted once, several requests at once.
kill9: a slow backfill killed with SIGKILL at random moments, 5 times: after each kill the
  rows are exactly the calls below the committed cursor (none past it, none missing), and
  the cursor never moves back; a last backfill completes, exact, each call inserted once.
pg_restart: a private PostgreSQL restarted twice while a slow backfill has pages in
  flight and commits on the writer thread: the backfill completes, exit 0, exact, one run,
  each call inserted once.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import random
import signal
import tempfile
import time

import faultlib as fl
import harness as h
from harness import check
from test_kill9 import committed_prefix_ok

# test_kill9 counts commits one by one; this script runs the pipeline
h.DEFAULT_ENV.clear()

PAGE = 20
PIPE = {"VOZAGENT_CONCURRENCY": "16", "VOZAGENT_BATCH_ROWS": "60",
        "VOZAGENT_MAX_DELETE_FRACTION": "100%"}
KINDS = {"new": 2, "late": 2, "finish": 2, "delete": 3}


def in_flight_at_once(c):
    return int(c.sim.state()["max_in_flight"])


def mutation(order, seed):
    n = 1500
    with h.Case("pipe_mutation", order=order, seed=seed, calls=0, page_size=PAGE,
                env=PIPE) as c:
        c.sim.reset(seed=seed, calls=n, in_progress_recent=60, in_progress_stuck=4)
        c.sim.clear_requests()
        # the mutator changes the list per request: the pipeline makes several requests
        # for each page it moves on by, so change it every fourth one, to keep the
        # changes per page read near test_live_mutation's one-page-at-a-time pace
        c.sim.mutator(seed=seed, every=4, per=2, kinds=KINDS, late_within_seconds=1800,
                      delete_window=PAGE, delete_near=0.7)
        r = c.run("backfill", timeout=180)
        rep = c.sim.mutator(off=True)
        c.expect_rc(r, 0, "backfill under mutation")
        at_once = in_flight_at_once(c)
        run = c.last_run()
        h.log("backfill under mutation: %d mutations %s; %s requests, %d at once, %s drift "
              "re-reads" % (rep["total"], rep["counts"], run["requests"], at_once,
                            run["drift_rereads"]))
        check(at_once > 1, "the simulator never answered two requests at once: no pipeline")
        check(run["drift_rereads"] > 0, "deletions moved the list under the backfill, yet "
              "drift_rereads = 0")
        deleted = {m["id"] for m in rep["mutations"] if m["kind"] == "delete" and m["id"]}
        c.expect_rc(c.run("once"), 0, "quiet once")
        c.assert_exact_but_deleted("after the backfill under mutation and a once", deleted)
        c.expect_rc(c.run("backfill"), 0, "quiet backfill")
        c.assert_exact("after a quiet backfill")


def faults(order, seed):
    n = 2000
    with h.Case("pipe_faults", order=order, seed=seed, calls=n, page_size=PAGE,
                env=PIPE) as c:
        # 10%: with sixteen pages in flight and their retries, one page failing five
        # attempts in a row at 15% came up once in a few dozen runs
        fl.faults(c.sim, rate=0.10, seed=seed)
        c.sim.clear_requests()
        r = c.run("backfill", timeout=180)
        c.expect_rc(r, 0, "backfill under a 10% fault rate")
        c.assert_exact("after the backfill under faults")
        reqs = fl.api_reqs(c.sim)
        hit = [x for x in reqs if x["fault"]]
        at_once = in_flight_at_once(c)
        run = c.last_run()
        h.log("%d requests, %d faulted, %d at once; sync_runs: requests %s, inserted %s"
              % (len(reqs), len(hit), at_once, run["requests"], run["inserted"]))
        check(len(hit) >= 5, "only %d faults were injected: the test proves nothing" % len(hit))
        check(at_once > 1, "the simulator never answered two requests at once: no pipeline")
        check(run["outcome"] == "ok" and run["inserted"] == n,
              "sync_runs: outcome %s, inserted %s for %d calls (a page written twice, or "
              "one lost?)" % (run["outcome"], run["inserted"], n))
        ok_offsets = {x["offset"] for x in reqs if not x["fault"]}
        missing = [o for o in range(0, n - PAGE + 1, PAGE - 1) if o not in ok_offsets]
        check(not missing, "pages never read whole: offsets %s" % missing[:10])


def kill9(order, seed):
    rng = random.Random(seed)
    n = 3000
    with h.Case("pipe_kill9", order=order, seed=seed, calls=0, page_size=PAGE,
                env=PIPE) as c:
        c.sim.reset(seed=seed, calls=n, in_progress_recent=60, in_progress_stuck=4)
        calls = c.sim.calls()
        # 158 pages, 16 at a time, 150 ms each: about 1.5 s of paging per command
        c.sim.config(delay_ms=150)
        last_b, kills, seen_all = None, 0, False
        for i in range(5):
            delay = rng.uniform(0.3, 1.2)
            p = c.spawn("backfill")
            time.sleep(delay)
            if p.poll() is not None:
                r = c.wait(p, 10)
                c.expect_rc(r, 0, "backfill that ended before its kill")
                break
            p.send_signal(signal.SIGKILL)
            c.wait(p, 10)
            kills += 1
            what = "after kill %d (%.2fs)" % (i, delay)
            if seen_all:
                # an earlier command read the whole list: every call is mirrored already,
                # whatever this one's cursor says; they must still be exact
                rows = c.mirror_rows()
                check(len(rows) == n and not h.mirror_diff(calls, rows, c.source),
                      "%s: the mirror lost or changed calls" % what)
                b = c.sync_state()["backfill_offset"]
            else:
                b = committed_prefix_ok(c, calls, what)
            seen_all = seen_all or c.count_calls() == n
            st = c.sync_state()
            wrapped = st is not None and st["backfill_wrap_to"] is not None
            h.log("kill %d after %.2fs: backfill_offset %s, %d rows" % (i, delay, b,
                                                                        c.count_calls()))
            if b is not None and not wrapped:
                check(last_b is None or b >= last_b, "backfill_offset moved back from %s to %s"
                      % (last_b, b))
                last_b = b
            elif wrapped:
                last_b = None
        check(kills >= 2, "test data: only %d kills landed" % kills)
        check(last_b is not None or c.count_calls() > 0, "test data: nothing was committed "
              "before any kill")
        c.sim.config(delay_ms=0)
        c.expect_rc(c.run("backfill", timeout=120), 0, "final backfill")
        c.assert_exact("after %d killed backfills and a final one" % kills)
        runs = c.sync_runs()
        ins = sum(int(x["inserted"]) for x in runs)
        check(ins == n, "inserted over all attempts = %d, expected %d (each call once)"
              % (ins, n))
        bad = [(x["id"], x["outcome"]) for x in runs[:-1] if x["outcome"] != "interrupted"]
        check(not bad, "killed runs not marked interrupted: %s" % bad)


def pg_restart(order, seed):
    n = 3000
    with tempfile.TemporaryDirectory(prefix="vozagent-e2e-pgpipe-") as workdir:
        with fl.Cluster(workdir) as cl, \
                cl.case("pipe_pg_restart", order=order, seed=seed, calls=n, page_size=PAGE,
                        env=PIPE) as c:
            c.sim.config(delay_ms=250)
            p = c.spawn("backfill")
            for at in (300, 1500):
                c.wait_for("%d calls committed" % at, lambda: p.poll() is not None or
                           c.count_calls() >= at, timeout=60)
                if p.poll() is not None:
                    check(False, "the backfill ended (%s) before the restart:\n%s"
                          % (p.returncode, h.tail(c.wait(p, 1).err, 15)))
                cl.restart()
                h.log("restarted PostgreSQL with %d calls committed" % c.count_calls())
            r = c.wait(p, 120)
            c.expect_rc(r, 0, "backfill across two PostgreSQL restarts")
            c.assert_exact("after the backfill across restarts")
            check("lost PostgreSQL" in r.err, "the log does not mention losing PostgreSQL:\n%s"
                  % h.tail(r.err, 10))
            runs = c.sync_runs()
            check(len(runs) == 1 and runs[0]["outcome"] == "ok" and runs[0]["inserted"] == n,
                  "sync_runs: %s" % [(x["outcome"], x["inserted"]) for x in runs])


if __name__ == "__main__":
    h.main(h.property_orders(mutation, "pipeline under mutation", 8101) +
           h.property_orders(faults, "pipeline under faults", 8102) +
           h.property_orders(kill9, "pipeline kill -9", 8103) +
           h.property_orders(pg_restart, "pipeline across PostgreSQL restarts", 8104))
