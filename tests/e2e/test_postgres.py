#!/usr/bin/env python3
"""Issue 4, "From PostgreSQL":

- unreachable at start (a closed TCP port, a database that does not exist, the
  server stopped): once / backfill / migrate / status exit 69 with libpq's message,
  within seconds, without a single API request;
- `run` with $NOTIFY_SOCKET while the server is down: keeps trying (1 s, doubling up
  to poll_interval), sends no READY=1 until it is connected, then READY=1, and
  mirrors; the server restarted (pg_ctl restart) in the middle of a pass and again
  between passes: the daemon stays up, the mirror ends exact, no call is inserted
  twice; SIGTERM -> STOPPING=1 and exit 0. This uses a private cluster, so the
  shared one is never restarted under other tests;
- pg_terminate_backend of the daemon's session in the middle of a backfill (twice):
  the pass reconnects, redoes the page, completes with exit 0, exact, every call
  inserted once, one sync_runs row;
- a schema newer than the binary (version 999 in vozagent.schema_migrations): every
  command refuses with a clear message, exit 69, and writes nothing."""

import re
import signal
import tempfile
import time

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

LIBPQ = re.compile(r"connection to server .* failed|could not connect|does not exist|"
                   r"Connection refused|No such file or directory")


def nothing_sent(c, what):
    reqs = fl.api_reqs(c.sim)
    check(not reqs, "%s: the API got %d request(s) although PostgreSQL is unusable"
          % (what, len(reqs)))


def unreachable_at_start():
    with h.Case("pg_unreachable", seed=461, calls=30) as c:
        port = fl.closed_port()
        urls = [("a closed TCP port", "host=127.0.0.1 port=%d user=vozagent dbname=x" % port,
                 "Connection refused"),
                ("a database that does not exist", c.pg.conninfo(c.db + "_nonexistent"),
                 "does not exist")]
        for label, url, mention in urls:
            for cmd in ("once", "backfill", "migrate", "status"):
                c.sim.clear_requests()
                r = c.run(cmd, env={"VOZAGENT_DATABASE_URL": url}, timeout=30)
                c.expect_rc(r, 69, "%s with %s" % (cmd, label))
                check(r.elapsed < h.scaled(10), "%s with %s took %.1fs" % (cmd, label, r.elapsed))
                check(mention in r.err and LIBPQ.search(r.err), "%s with %s: libpq's message "
                      "(%r) is not shown:\n%s" % (cmd, label, mention, h.tail(r.err, 3)))
                nothing_sent(c, "%s with %s" % (cmd, label))
            h.log("%s: once/backfill/migrate/status exit 69: %s" % (label, h.tail(r.err, 1)))
        fl.assert_secret_free(c, what="unreachable at start")


def server_down_and_restarted():
    with tempfile.TemporaryDirectory(prefix="vozagent-e2e-pgpriv-") as workdir:
        with fl.Cluster(workdir) as cl, \
                cl.case("pg_restart", seed=462, calls=200, page_size=10,
                        env={"VOZAGENT_POLL_INTERVAL": "2s"}) as c:
            notify = fl.Notify(c.tmp)
            cl.stop()
            r = c.run("once", timeout=30)
            c.expect_rc(r, 69, "once with the server stopped")
            check(LIBPQ.search(r.err), "once: no libpq message:\n%s" % h.tail(r.err, 3))
            nothing_sent(c, "once with the server stopped")
            h.log("server stopped: once exits 69: %s" % h.tail(r.err, 1))

            p = c.spawn("run", env={"NOTIFY_SOCKET": notify.path})
            time.sleep(h.scaled(4.5))
            check(p.poll() is None, "run exited (%s) while PostgreSQL was down" % p.returncode)
            check(not notify.has("READY=1"), "READY=1 sent while PostgreSQL is down: %s"
                  % notify.msgs)
            waiting = [m for m in notify.lines() if m.startswith("STATUS=")]
            check(waiting, "no STATUS= while waiting for PostgreSQL")
            # retries 1 s after the first attempt, then doubling, at most poll_interval (2s)
            tries = [float(x) for m in waiting for x in re.findall(r"(\d+(?:\.\d+)?)s\b", m)]
            check(tries and tries[0] == 1 and tries == sorted(tries) and max(tries) <= 2,
                  "the waits between connection attempts are not 1s, doubling up to "
                  "poll_interval = 2s: %s" % waiting)
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                check(c.token.encode() not in f.read(), "the key is in the process title")
            nothing_sent(c, "run with the server stopped")
            h.log("run waits without READY=1: %d STATUS messages, e.g. %r"
                  % (len(waiting), waiting[-1]))
            cl.start()
            t = time.monotonic()
            notify.wait_for("READY=1", 10, p)
            h.log("READY=1 %.1fs after the server came back" % (time.monotonic() - t))
            c.wait_exact("after the first pass", timeout=30, proc=p)

            # a restart in the middle of a pass (the simulator is slow)
            c.sim.config(delay_ms=60)
            c.sim.add(count=300)
            n0 = c.count_calls()
            c.wait_for("a pass paging", lambda: c.count_calls() >= n0 + 40, timeout=30)
            cl.restart()
            h.log("restarted with %d of %d calls mirrored" % (c.count_calls(), n0 + 300))
            c.wait_exact("after a restart mid-pass", timeout=60, proc=p)
            c.sim.config(delay_ms=0)

            # a restart between passes
            c.wait_for("the pass to end", lambda: c.scalar(
                "select count(*) from vozagent.sync_runs where outcome = 'running'") == "0",
                timeout=30)
            cl.restart()
            c.sim.add(count=25)
            c.sim.finish(count=5)
            c.wait_exact("after a restart between passes", timeout=60, proc=p)
            check(p.poll() is None, "the daemon exited (%s)" % p.returncode)

            h.terminate(p, signal.SIGTERM)
            r = c.wait(p, 10)
            c.expect_rc(r, 0, "run after SIGTERM")
            notify.poll()
            check(notify.has("STOPPING=1"), "no STOPPING=1 on SIGTERM: %s" % notify.msgs)
            check("lost PostgreSQL" in r.err or "cannot connect" in r.err,
                  "the daemon's log does not mention losing PostgreSQL:\n%s" % h.tail(r.err, 20))
            lost = r.err.count("lost PostgreSQL")
            h.log("run: %d 'lost PostgreSQL' messages, %d reconnects; still ran until SIGTERM"
                  % (lost, r.err.count("reconnected")))
            runs = c.sync_runs()
            inserted = sum(x["inserted"] for x in runs)
            total = c.count_calls()
            check(inserted == total, "sync_runs.inserted adds up to %d for %d calls (a page "
                  "counted twice after a reconnect?)" % (inserted, total))
            check(not [x for x in runs if x["outcome"] == "running"],
                  "passes left 'running': %s" % [(x["id"], x["outcome"]) for x in runs])
            h.log("passes: %s" % [(x["mode"][0], x["outcome"]) for x in runs])
            fl.assert_secret_free(c, extra=notify.msgs, what="restart")
            notify.close()


def backend_terminated():
    with h.Case("pg_terminate", seed=463, calls=300, page_size=10) as c:
        c.sim.config(delay_ms=40)
        p = c.spawn("backfill")
        killed = 0
        for at in (60, 160):
            c.wait_for("%d calls committed" % at,
                       lambda: p.poll() is not None or c.count_calls() >= at, timeout=60)
            check(p.poll() is None, "backfill ended (%s) before the backend was terminated"
                  % p.returncode)
            pids = fl.daemon_backends(c)
            check(pids, "no backend with application_name 'vozagent-sync'")
            for pid in pids:
                killed += c.scalar("select pg_terminate_backend(%s)" % pid) == "t"
            h.log("terminated the daemon's backend %s at %d calls" % (pids, c.count_calls()))
            time.sleep(0.3)
        r = c.wait(p, 60)
        c.expect_rc(r, 0, "backfill whose backend was terminated twice")
        c.assert_exact("after the backfill")
        check(killed == 2, "terminated %d backends, expected 2" % killed)
        check(r.err.count("reconnected to PostgreSQL") >= 2, "the log shows fewer than 2 "
              "reconnects:\n%s" % h.tail(r.err, 10))
        runs = c.sync_runs()
        check(len(runs) == 1 and runs[0]["outcome"] == "ok" and runs[0]["inserted"] == 300,
              "sync_runs: %s" % [(x["outcome"], x["inserted"]) for x in runs])
        h.log("backfill survived 2 terminated backends: one run, 300 inserted, exact")
        fl.assert_secret_free(c, what="pg_terminate_backend")


def schema_too_new():
    with h.Case("pg_schema_new", seed=464, calls=40, env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        c.expect_rc(c.run("backfill"), 0)
        c.q("INSERT INTO vozagent.schema_migrations (version, name) "
            "VALUES (999, 'from the future')")
        c.sim.add(count=10)
        before = c.q("select (select count(*) from vozagent.calls), "
                     "(select count(*) from vozagent.sync_runs), "
                     "(select max(updated_at) from vozagent.sync_state), "
                     "(select count(*) from vozagent.schema_migrations)")
        soft = fl.Soft()
        for cmd in ("once", "backfill", "migrate", "status", "run"):
            c.sim.clear_requests()
            if cmd == "run":
                p = c.spawn("run")
                try:
                    p.wait(h.scaled(8))
                except Exception:
                    pass
                if p.poll() is None:
                    h.terminate(p, signal.SIGTERM)
                r = c.wait(p, 10)
            else:
                r = c.run(cmd, timeout=30)
            soft.check(r.rc == 69, "%s on a schema newer than the binary: exit %s, expected 69%s"
                       % (cmd, r.rc, " (it kept waiting, then exited on SIGTERM)"
                          if cmd == "run" else ""))
            soft.check("newer" in r.err and "999" in r.err,
                       "%s: the message does not say the schema (999) is newer:\n%s"
                       % (cmd, h.tail(r.err, 3)))
            soft.check(not fl.api_reqs(c.sim), "%s: the API was called" % cmd)
            h.log("%s: exit %s: %s" % (cmd, r.rc, h.tail(r.err, 1)))
        after = c.q("select (select count(*) from vozagent.calls), "
                    "(select count(*) from vozagent.sync_runs), "
                    "(select max(updated_at) from vozagent.sync_state), "
                    "(select count(*) from vozagent.schema_migrations)")
        soft.check(before == after, "something was written: %s -> %s" % (before, after))
        fl.assert_secret_free(c, what="schema too new")
        soft.done()


if __name__ == "__main__":
    h.main([("unreachable at start", unreachable_at_start),
            ("server down, then restarted under run", server_down_and_restarted),
            ("pg_terminate_backend mid-pass", backend_terminated),
            ("schema newer than the binary", schema_too_new)])
