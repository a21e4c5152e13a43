#!/usr/bin/env python3
"""Error paths a healthy machine never takes, reached with the failpoints module
(LD_PRELOAD), end in a message and an exit code, never abort() or a false success:
- the loop's signal handles cannot be set up: `once` and `run` exit 70 with a message
  (the scheduler used to abort(), a SIGABRT and, under systemd, a core dump);
- the source's name cannot be copied when its lock is taken: `once` fails with a
  message instead of reporting success with the lock unrecorded (which left it not
  taken again after a reconnect);
- a reconnect of `run` whose preparation fails (PQprepare, once): the pass is closed
  'failed', and the next passes connect anew and hold the source's lock while they run
  (it used to go on with the unprepared session, without the lock, beside a `once`)."""

import os
import signal

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)


def preload_env(extra):
    lib = os.environ.get("VOZAGENT_TEST_FAILPOINTS")
    check(lib and os.path.exists(lib), "VOZAGENT_TEST_FAILPOINTS does not name the built "
          "failpoints module (%r): run this through ctest" % lib)
    env = {"LD_PRELOAD": lib,
           # a sanitized binary would refuse a preload that comes before its runtime
           "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                            ":verify_asan_link_order=0").lstrip(":")}
    env.update(extra)
    return env


def signal_init_fails():
    with h.Case("failpoint_signal", seed=95, calls=20) as c:
        # uv_loop_init sets up one signal handle: the scheduler's first (1) or second (2)
        # then fails, with its timer and the handles before set up and to be closed
        for cmd, after in (("once", 1), ("run", 1), ("run", 2)):
            r = c.run(cmd, env=preload_env({"E2E_FAIL_UV_SIGNAL_INIT": str(after)}),
                      timeout=60)
            check(r.rc != -signal.SIGABRT, "%s aborted (SIGABRT)" % cmd)
            c.expect_rc(r, 70, "%s when signal handle %d cannot be set up" % (cmd, after))
            check("cannot set up the scheduler" in r.err,
                  "%s: no message says why:\n%s" % (cmd, h.tail(r.err, 5)))
            check("handles still open" not in r.err,
                  "%s: the handles set up were not closed:\n%s" % (cmd, h.tail(r.err, 5)))
        # the control: the module alone changes nothing
        c.expect_rc(c.run("once", env=preload_env({})), 0, "once with the module, no failpoint")
        c.assert_exact("after once")


def lock_copy_fails():
    with h.Case("failpoint_lock", seed=96, calls=20, source="e2e-lock-copy") as c:
        r = c.run("once", env=preload_env({"E2E_FAIL_STRDUP": c.source}), timeout=60)
        check(r.rc != 0, "once reported success though the lock of its source could not be "
              "recorded")
        check("out of memory taking the lock of source 'e2e-lock-copy'" in r.err,
              "no message says the lock could not be recorded:\n%s" % h.tail(r.err, 5))
        check(c.count_calls() == 0, "calls were written without the lock recorded")
        h.log("lock copy fails: exit %s, %s" % (r.rc, h.tail(r.err, 1)))
        c.expect_rc(c.run("once", env=preload_env({})), 0, "once with the module, no failpoint")
        c.assert_exact("after once")


def source_lock_holders(c):
    return c.scalar("select count(*) from pg_locks l join pg_stat_activity a using (pid) "
                    "where l.locktype = 'advisory' and l.classid = 1450801729 and "
                    "l.objsubid = 2 and l.granted and a.datname = '%s' and "
                    "a.application_name = 'vozagent-sync'" % c.db)


def run_prepare_fails_after_reconnect():
    with h.Case("failpoint_prep_run", seed=97, calls=300, page_size=10,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        c.expect_rc(c.run("migrate"), 0)
        marker = os.path.join(c.tmp, "fail-prepare")
        c.sim.config(delay_ms=40)
        p = c.spawn("run", env=preload_env({"E2E_FAIL_PQPREPARE": marker}))
        c.wait_for("60 calls committed", lambda: p.poll() is not None or c.count_calls() >= 60,
                   timeout=60)
        check(p.poll() is None, "run ended (%s) too early" % p.returncode)
        open(marker, "w").close()
        for pid in fl.daemon_backends(c):
            c.scalar("select pg_terminate_backend(%s)" % pid)
        c.wait_for("the failed pass recorded", lambda: p.poll() is not None or any(
            r["outcome"] == "failed" for r in c.sync_runs()), timeout=60)
        check(p.poll() is None, "run exited (%s)" % p.returncode)
        check(not os.path.exists(marker), "the failpoint did not fire")
        failed = [r for r in c.sync_runs() if r["outcome"] == "failed"][0]
        h.log("failed pass: %s" % failed["error"])
        c.sim.config(delay_ms=0)
        c.wait_for("a pass after the failed one", lambda: p.poll() is not None or any(
            r["id"] > failed["id"] and r["outcome"] == "ok" for r in c.sync_runs()),
            timeout=60)
        check(p.poll() is None, "run exited (%s)" % p.returncode)
        # run holds the source for a pass and gives it back between passes: look during
        # one, made slow enough
        c.sim.config(delay_ms=2000)
        last = max(r["id"] for r in c.sync_runs())
        c.wait_for("a slow pass running", lambda: p.poll() is not None or any(
            r["id"] > last and r["outcome"] == "running" for r in c.sync_runs()), timeout=60)
        check(source_lock_holders(c) == "1", "run passes without holding the source's lock")
        r = c.run("once", timeout=60)
        c.expect_rc(r, 75, "once while a pass of run holds the source")
        c.sim.config(delay_ms=0)
        h.terminate(p)
        c.expect_rc(c.wait(p, 20), 0, "run after SIGTERM")
        c.assert_exact("after run")


if __name__ == "__main__":
    h.main([("no abort when the loop's handles cannot be set up", signal_init_fails),
            ("no false success when the lock cannot be recorded", lock_copy_fails),
            ("run takes its lock again after a reconnect that cannot prepare",
             run_prepare_fails_after_reconnect)])
