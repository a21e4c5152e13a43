#!/usr/bin/env python3
"""run: the daemon passes every poll_interval and keeps the mirror exact while calls
are added and finished; SIGTERM (or SIGINT) makes it exit 0 within 10 s, leaving no
pass marked 'running'."""

import signal
import time

import harness as h
from harness import check


def scenario(order, sig, interval):
    with h.Case("run", order=order, seed=41, calls=200, page_size=50,
                env={"VOZAGENT_POLL_INTERVAL": interval}) as c:
        p = c.spawn("run")
        c.wait_exact("after the first pass", timeout=30, proc=p)
        for rnd in range(2):
            c.sim.add(late=3, within_seconds=1800)
            c.sim.add(count=10)
            c.sim.finish(count=4, pick="oldest" if rnd == 0 else "random")
            c.wait_exact("after changes %d" % rnd, timeout=30, proc=p)
        check(p.poll() is None, "the daemon exited on its own")
        # Some passes have run over unchanged data by now; one more makes it certain.
        time.sleep(1.5)
        t = time.monotonic()
        h.terminate(p, sig)
        r = c.wait(p, 10)
        check(r.rc == 0, "run: exit %s after %s, expected 0" % (r.rc, sig.name))
        h.log("run exited %s after %s in %.2fs" % (r.rc, sig.name, time.monotonic() - t))
        runs = c.sync_runs()
        check(len(runs) >= 3, "expected >= 3 passes in sync_runs, got %d" % len(runs))
        # The source never had a full pass, so run's first pass is one (a
        # reconciliation is due: full_resync_interval); then incremental ones.
        modes = [x["mode"] for x in runs]
        check(modes[0] == "backfill" and all(m == "incremental" for m in modes[1:]),
              "run's passes: %s, expected one backfill, then incremental" % modes)
        running = [x for x in runs if x["outcome"] == "running"]
        check(not running, "passes left 'running' after a clean stop: %s" % running)
        check(sum(x["outcome"] == "ok" for x in runs) >= 3, "fewer than 3 ok passes: %s"
              % [x["outcome"] for x in runs])
        c.assert_exact("after the daemon stopped")


def stop_mid_pass(order):
    """SIGTERM while a pass is paging (the simulator is slow): exit 0 within 10 s, the
    pass is recorded as interrupted (not left 'running'), what was committed is exact,
    and the next pass completes the mirror."""
    with h.Case("run_stop", order=order, seed=42, calls=2000, page_size=10,
                env={"VOZAGENT_POLL_INTERVAL": "1h"}) as c:
        c.sim.config(delay_ms=150)
        p = c.spawn("run")
        c.wait_for("a few pages committed",
                   lambda: p.poll() is not None or c.count_calls() >= 30, timeout=60)
        check(p.poll() is None, "run exited (%s) during its first pass" % p.returncode)
        t = time.monotonic()
        h.terminate(p, signal.SIGTERM)
        r = c.wait(p, 10)
        check(r.rc == 0, "run: exit %s after SIGTERM mid-pass, expected 0" % r.rc)
        h.log("stopped mid-pass in %.2fs with %d rows committed"
              % (time.monotonic() - t, c.count_calls()))
        runs = c.sync_runs()
        check(runs and runs[-1]["outcome"] in ("interrupted", "failed"),
              "the pass stopped by SIGTERM is recorded as %s" % (runs[-1:],))
        ids = {x["id"] for x in c.mirror_rows()}
        d = h.mirror_diff([x for x in c.sim.calls() if x["id"] in ids], c.mirror_rows(), c.source)
        check(not d, "committed rows differ:\n  " + "\n  ".join(d))
        c.sim.config(delay_ms=0)
        c.expect_rc(c.run("once"), 0, "once after the interrupted run")
        c.assert_exact("after once")


if __name__ == "__main__":
    h.main([("run, SIGTERM, poll 1s [oldest_first]",
             lambda: scenario("oldest_first", signal.SIGTERM, "1s")),
            ("run, SIGINT, poll 1 [newest_first]",
             lambda: scenario("newest_first", signal.SIGINT, "1"))] +
           h.both_orders(stop_mid_pass, "run, SIGTERM mid-pass"))
