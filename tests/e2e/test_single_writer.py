#!/usr/bin/env python3
"""One writer per source (issue 3, guarantee 7), in both orders.

same_source: a slow `backfill` holds the source. A `once` on the same source exits 75
  within seconds, with a message naming the source and saying another process holds it,
  and writes nothing: no sync_runs row, the running backfill's row not touched, and no
  API request (it is pointed at a second simulator serving the same data, whose request
  log must stay empty). A `run` on the same source waits: it stays alive, logs that it
  waits, makes no API request; once the backfill exits it takes over: its passes mirror
  the data (the second simulator's, changed meanwhile) exactly, and SIGTERM stops it.
two_sources: two slow backfills of different sources (each its own simulator) into the
  same database run at the same time (their sync_runs intervals overlap) and both
  mirrors are exact.

twin_daemons: two `run` of one source (two template instances whose configs forgot
  `source`), each with its own account (simulator, different data). The first syncs; the
  second logs once that another daemon runs the source and waits: its simulator gets no
  request and the mirror holds only the first account's calls, over several of the first
  one's passes (between which it gives the source's own lock back). After the first is
  stopped, the second takes over: the mirror is exact to its account (the first's calls
  marked deleted by its full pass). The lock does not depend on the API's order: one order.
twin_reconnect: the first daemon (its own PostgreSQL role) loses its connection mid-pass
  and cannot log in again for a while; the second takes the source and mirrors its
  account. When the first gets back in, its reconnect finds the daemon lock taken: its
  pass gives up ("while the connection was down") and it waits, writing nothing and
  asking its API nothing more, while the second goes on.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import os
import re
import time

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)


def extra_sim(c, name, seed, calls, order):
    d = os.path.join(c.tmp, name)
    os.makedirs(d, exist_ok=True)
    return h.Sim(d, c.token, seed, calls, order)


def read(c, p):
    with open(os.path.join(c.tmp, "bin%d.err" % p.e2e_n), encoding="utf-8",
              errors="replace") as f:
        return f.read()


def same_source(order, seed):
    n, page = 400, 10
    with h.Case("writer", order=order, seed=seed, calls=n, page_size=page) as c:
        t0 = time.monotonic()
        twin = extra_sim(c, "twin", seed, n, order)     # the same data, its own request log
        try:
            check([x["id"] for x in twin.calls()] == [x["id"] for x in c.sim.calls()],
                  "test data: the two simulators differ")
            c.sim.config(delay_ms=150)
            p1 = c.spawn("backfill")
            c.wait_for("the backfill to commit pages",
                       lambda: p1.poll() is not None or c.count_calls() >= 3 * page, timeout=30)
            check(p1.poll() is None, "the backfill exited (%s) too soon" % p1.returncode)
            runs0 = c.sync_runs()
            check(len(runs0) == 1 and runs0[0]["outcome"] == "running",
                  "sync_runs while the backfill runs: %s" % runs0)

            r = c.run("once", env={"VOZAGENT_API_URL": twin.api_url}, timeout=30)
            c.expect_rc(r, 75, "once while a backfill holds the source")
            check(r.elapsed < h.scaled(5), "the refused once took %.1fs" % r.elapsed)
            check(re.search(r"another .*process", r.err) and "'%s'" % c.source in r.err,
                  "the refusal does not say another process holds source '%s':\n%s"
                  % (c.source, r.err))
            check(not twin.requests(), "the refused once made API requests: %s"
                  % twin.requests()[:3])
            runs1 = c.sync_runs()
            check(len(runs1) == 1 and runs1[0]["outcome"] == "running",
                  "the refused once wrote sync_runs: %s" % runs1)
            h.log("once refused in %.2fs: %s" % (r.elapsed, r.err.strip().splitlines()[-1]))

            p2 = c.spawn("run", env={"VOZAGENT_API_URL": twin.api_url,
                                     "VOZAGENT_POLL_INTERVAL": "1s"})
            time.sleep(2.5)
            check(p2.poll() is None, "the second run exited (%s) instead of waiting:\n%s"
                  % (p2.returncode, read(c, p2)))
            err = read(c, p2)
            check(re.search(r"another .*process.*'%s'.*wait" % re.escape(c.source), err),
                  "the waiting run does not log that it waits:\n%s" % err)
            check(not twin.requests(), "the waiting run made API requests: %s"
                  % twin.requests()[:3])
            check(len(c.sync_runs()) == 1, "the waiting run wrote sync_runs: %s"
                  % c.sync_runs())
            check(p1.poll() is None, "test timing: the backfill ended while the run waited")
            h.log("run waits: %s" % err.strip().splitlines()[-1])

            twin.add(count=7)
            twin.finish(count=3)
            c.sim.config(delay_ms=0)
            c.expect_rc(c.wait(p1, 30), 0, "the first backfill")
            c.wait_for("the waiting run to take over and mirror the data",
                       lambda: p2.poll() is not None or
                       not h.mirror_diff(twin.calls(), c.mirror_rows(), c.source),
                       timeout=20, interval=0.3)
            check(p2.poll() is None, "the run exited (%s) after taking over" % p2.returncode)
            check(twin.requests(), "the run took over without API requests")
            mine = [x for x in c.sync_runs()[1:]]
            check(mine and all(x["outcome"] in ("ok", "running") for x in mine),
                  "the run's passes: %s" % [(x["mode"], x["outcome"]) for x in mine])
            h.terminate(p2)
            c.expect_rc(c.wait(p2, 15), 0, "the run, stopped by SIGTERM")
            d = h.mirror_diff(twin.calls(), c.mirror_rows(), c.source)
            check(not d, "mirror differs:\n  " + "\n  ".join(d))
            h.log("same_source[%s]: %.1fs" % (order, time.monotonic() - t0))
        finally:
            twin.stop()


def two_sources(order, seed):
    n, page = 200, 10
    with h.Case("writers", order=order, seed=seed, calls=n, page_size=page) as c:
        t0 = time.monotonic()
        other = extra_sim(c, "other", seed + 1, n, order)
        try:
            c.sim.config(delay_ms=80)
            other.config(delay_ms=80)
            pa = c.spawn("backfill", env={"VOZAGENT_SOURCE": "alpha"})
            pb = c.spawn("backfill", env={"VOZAGENT_SOURCE": "beta",
                                          "VOZAGENT_API_URL": other.api_url})
            ra, rb = c.wait(pa, 60), c.wait(pb, 60)
            c.expect_rc(ra, 0, "backfill of source alpha")
            c.expect_rc(rb, 0, "backfill of source beta")
            runs = c.qjson("select json_object_agg(source, json_build_object('s', started_at, "
                           "'f', finished_at, 'o', outcome)) from vozagent.sync_runs")
            a, b = runs["alpha"], runs["beta"]
            sa, fa, sb, fb = (h.parse_instant(x) for x in (a["s"], a["f"], b["s"], b["f"]))
            h.log("alpha %s..%s, beta %s..%s" % (sa.time(), fa.time(), sb.time(), fb.time()))
            check(sa < fb and sb < fa, "the two sources did not sync at the same time: alpha "
                  "%s..%s, beta %s..%s" % (sa, fa, sb, fb))
            rows = c.mirror_rows()
            for src, sim in (("alpha", c.sim), ("beta", other)):
                d = h.mirror_diff(sim.calls(), [r for r in rows if r["source"] == src], src)
                check(not d, "source %s differs:\n  %s" % (src, "\n  ".join(d)))
            h.log("two_sources[%s]: both exact, %.1fs" % (order, time.monotonic() - t0))
        finally:
            other.stop()


def twin_daemons():
    with h.Case("twins", seed=3503, calls=120, page_size=20,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        other = extra_sim(c, "other", 3504, 80, "oldest_first")
        try:
            check(not {x["id"] for x in c.sim.calls()} & {x["id"] for x in other.calls()},
                  "test data: the two accounts share call ids")
            p1 = c.spawn("run")
            c.wait_exact("the first daemon's first pass", proc=p1)
            p2 = c.spawn("run", env={"VOZAGENT_API_URL": other.api_url,
                                     "VOZAGENT_FULL_RESYNC_INTERVAL": "1s",
                                     "VOZAGENT_MAX_DELETE_FRACTION": "100%"})
            before = len(c.sync_runs())
            # passes of the first, each ending with the source's lock given back
            c.wait_for("three more passes of the first daemon", lambda: p1.poll() is not None
                       or len(c.sync_runs()) >= before + 3, timeout=30)
            check(p1.poll() is None and p2.poll() is None, "a daemon exited: %s, %s"
                  % (p1.returncode, p2.returncode))
            check(not other.requests(), "the second daemon synced while the first lives: "
                  "%d requests to its API, e.g. %s" % (len(other.requests()),
                                                      other.requests()[:2]))
            c.assert_exact("while the first daemon lives")
            err = read(c, p2)
            check(err.count("as a daemon") == 1 and "'%s'" % c.source in err,
                  "the second daemon does not log once that it waits for the first:\n%s"
                  % h.tail(err))
            h.terminate(p1)
            c.expect_rc(c.wait(p1, 15), 0, "the first daemon, stopped by SIGTERM")
            c.wait_for("the second daemon to mirror its account", lambda: p2.poll() is not None
                       or not h.mirror_diff(other.calls(), c.mirror_rows(), c.source),
                       timeout=30, interval=0.3)
            check(p2.poll() is None, "the second daemon exited (%s)" % p2.returncode)
            h.terminate(p2)
            c.expect_rc(c.wait(p2, 15), 0, "the second daemon, stopped by SIGTERM")
            d = h.mirror_diff(other.calls(), c.mirror_rows(), c.source)
            check(not d, "mirror differs from the second account:\n  " + "\n  ".join(d))
        finally:
            other.stop()


def twin_reconnect():
    with h.Case("twinrc", seed=3505, calls=400, page_size=10,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        other = extra_sim(c, "other", 3506, 60, "oldest_first")
        role = "e2e_twin_%d" % os.getpid()
        c.expect_rc(c.run("migrate"), 0, "migrate")
        c.q('DROP ROLE IF EXISTS "%s"; CREATE ROLE "%s" LOGIN SUPERUSER' % (role, role))
        try:
            url = re.sub(r"\buser=\S+", "user=" + role, c.pg.conninfo(c.db))
            c.sim.config(delay_ms=200)
            p1 = c.spawn("run", env={"VOZAGENT_DATABASE_URL": url,
                                     "VOZAGENT_CONCURRENCY": "1"})
            c.wait_for("the first daemon's first pass to commit pages",
                       lambda: p1.poll() is not None or c.count_calls() >= 20, timeout=30)
            p2 = c.spawn("run", env={"VOZAGENT_API_URL": other.api_url,
                                     "VOZAGENT_FULL_RESYNC_INTERVAL": "1s",
                                     "VOZAGENT_MAX_DELETE_FRACTION": "100%"})
            c.wait_for("the second daemon to wait", lambda: p2.poll() is not None or
                       "as a daemon" in read(c, p2), timeout=20)
            check(p1.poll() is None and p2.poll() is None and not other.requests(),
                  "test timing: a daemon exited, or the second synced")
            c.q('ALTER ROLE "%s" NOLOGIN; SELECT pg_terminate_backend(pid) FROM '
                'pg_stat_activity WHERE usename = \'%s\'' % (role, role))
            c.wait_for("the second daemon to mirror its account", lambda: p2.poll() is not None
                       or not h.mirror_diff(other.calls(), c.mirror_rows(), c.source),
                       timeout=30, interval=0.3)
            c.q('ALTER ROLE "%s" LOGIN' % role)
            c.wait_for("the first daemon to find the source taken", lambda: p1.poll()
                       is not None or "as a daemon" in read(c, p1), timeout=90)
            err = read(c, p1)
            check(p1.poll() is None and "while the connection was down" in err,
                  "the first daemon's reconnect did not find the source taken:\n%s"
                  % h.tail(err))
            asked = len(c.sim.requests())
            before = len(c.sync_runs())
            c.wait_for("two more passes of the second daemon", lambda: p2.poll() is not None
                       or len(c.sync_runs()) >= before + 2, timeout=30)
            check(len(c.sim.requests()) == asked, "the first daemon asked its API again "
                  "after it found the source taken")
            d = h.mirror_diff(other.calls(), c.mirror_rows(), c.source)
            check(not d, "mirror differs from the second account:\n  " + "\n  ".join(d))
            for p in (p1, p2):
                h.terminate(p)
                c.expect_rc(c.wait(p, 15), 0, "a daemon, stopped by SIGTERM")
        finally:
            other.stop()
            c.q('ALTER ROLE "%s" LOGIN' % role)
            for p in c.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            c.q('DROP ROLE IF EXISTS "%s"' % role)


if __name__ == "__main__":
    h.main(h.property_orders(same_source, "one source, two processes", 3501) +
           h.property_orders(two_sources, "two sources at once", 3502) +
           [("twin_daemons", twin_daemons), ("twin_reconnect", twin_reconnect)])
