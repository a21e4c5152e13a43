#!/usr/bin/env python3
"""The API's order: detected, overridable, and a change of it is noticed (issue 3,
guarantee 3), seeded, in both orders.

detect_and_flip: after the first full scan sync_state.api_order is the simulator's
  order, and `status` shows it with the cursor (newest call mirrored), no backfill
  running, and the unfinished calls it tracks (their number and the oldest one's start,
  as in the mirror). Then changes, and the simulator flips its order between passes:
  the next `once` notices the contradiction, reads the whole list, is exact, and records
  the new order; the pass after it is exact and small again; flipping back works too.
override: VOZAGENT_ORDER. With the simulator flipped, `once` with VOZAGENT_ORDER set to
  the new order relies on it rather than the recorded one: exact, and it reads only the
  tail (no contradiction, far fewer requests than the whole list). With VOZAGENT_ORDER
  naming the wrong order, every pass still ends exact (the contradiction makes it read
  the whole list).
unknown: the order flips in the middle of a backfill, so the data fits neither order:
  sync_state.api_order and `status` say "unknown"; the next `once` reads the whole list
  rather than guessing, and is exact.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import random
import re
import time

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

N, PAGE = 1000, 25
OTHER = {"oldest_first": "newest_first", "newest_first": "oldest_first"}


def changes(c, rng):
    c.sim.add(count=rng.randint(3, 30))
    c.sim.add(late=rng.randint(1, 4), within_seconds=1800)
    c.sim.finish(count=rng.randint(1, 4))


def status_fields(c):
    r = c.run("status")
    c.expect_rc(r, 0, "status")
    fields = {}
    for line in r.out.splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields, r.out


def check_status(c, order):
    f, out = status_fields(c)
    check(f.get("API order") == order, "status shows API order %r, expected %s:\n%s"
          % (f.get("API order"), order, out))
    rows = [r for r in c.mirror_rows() if r["deleted_at"] is None]
    newest = max(h.parse_instant(r["call_started_at"]) for r in rows)
    check(f.get("newest call mirrored") == newest.strftime("%Y-%m-%dT%H:%M:%SZ"),
          "status shows newest call mirrored %r, the mirror's newest started %s:\n%s"
          % (f.get("newest call mirrored"), newest, out))
    check(f.get("backfill") == "none running", "status shows backfill %r:\n%s"
          % (f.get("backfill"), out))
    running = [r for r in rows if r["call_status"] == "in-progress"]
    oldest = min(h.parse_instant(r["call_started_at"]) for r in running)
    want = "%d (oldest started %s)" % (len(running), oldest.strftime("%Y-%m-%dT%H:%M:%SZ"))
    check(f.get("unfinished calls tracked") == want, "status shows unfinished calls tracked "
          "%r, the mirror holds %s:\n%s" % (f.get("unfinished calls tracked"), want, out))
    return f


def once_exact(c, what):
    seq0 = c.sim.last_seq()
    c.expect_rc(c.run("once"), 0, what)
    c.assert_exact(what)
    run = c.last_run()
    reqs = h.api_log_since(c.sim.requests(), seq0)
    check(run["requests"] == len(reqs), "%s: sync_runs.requests %s, the simulator got %d"
          % (what, run["requests"], len(reqs)))
    return run


def detect_and_flip(order, seed):
    rng = random.Random(seed)
    with h.Case("order_flip", order=order, seed=seed, calls=0, page_size=PAGE) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=N, in_progress_recent=50, in_progress_stuck=3)
        c.expect_rc(c.run("backfill"), 0, "backfill")
        check(c.sync_state()["api_order"] == order, "sync_state.api_order = %r after the first "
              "full scan of a %s list" % (c.sync_state()["api_order"], order))
        f = check_status(c, order)
        h.log("status: %s" % f)
        whole = h.scan_pages(N, PAGE)
        cur = order
        for i in range(2):
            changes(c, rng)
            cur = OTHER[cur]
            c.sim.config(order=cur)
            run = once_exact(c, "after the API's order flipped to %s" % cur)
            h.log("once after the flip to %s: %s requests (whole list: %d pages)"
                  % (cur, run["requests"], whole))
            check(run["requests"] >= whole, "the once after the flip made %s requests, fewer "
                  "than the %d pages of the whole list" % (run["requests"], whole))
            check(c.sync_state()["api_order"] == cur, "sync_state.api_order = %r after a "
                  "whole-list read of a %s list" % (c.sync_state()["api_order"], cur))
            changes(c, rng)
            run = once_exact(c, "one more pass in %s" % cur)
            check(run["requests"] * 3 <= whole, "the next pass (order %s) made %s requests: "
                  "not incremental" % (cur, run["requests"]))
            check_status(c, cur)
        h.log("detect_and_flip[%s]: %.1fs" % (order, time.monotonic() - t0))


def override(order, seed):
    rng = random.Random(seed)
    with h.Case("order_override", order=order, seed=seed, calls=0, page_size=PAGE) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=N, in_progress_recent=50, in_progress_stuck=3)
        c.expect_rc(c.run("backfill", env={"VOZAGENT_ORDER": order}), 0, "backfill")
        whole = h.scan_pages(N, PAGE)
        # the API flips; the configuration says so: the pass relies on it
        other = OTHER[order]
        c.sim.config(order=other)
        changes(c, rng)
        seq0 = c.sim.last_seq()
        c.expect_rc(c.run("once", env={"VOZAGENT_ORDER": other}), 0, "once, order configured")
        c.assert_exact("after once with VOZAGENT_ORDER=%s" % other)
        run = c.last_run()
        h.log("once with VOZAGENT_ORDER=%s (recorded: %s): %s requests (whole list %d pages)"
              % (other, c.sync_state()["api_order"], run["requests"], whole))
        check(run["requests"] * 3 <= whole, "with VOZAGENT_ORDER=%s matching the API, the pass "
              "made %s requests: it did not rely on the configured order" % (other,
                                                                             run["requests"]))
        reqs = h.api_log_since(c.sim.requests(), seq0)
        check(reqs, "no requests")

        # a wrong override still ends exact
        for i in range(2):
            changes(c, rng)
            run = c.run("once", env={"VOZAGENT_ORDER": order})
            c.expect_rc(run, 0, "once with the wrong VOZAGENT_ORDER=%s" % order)
            c.assert_exact("after once %d with the wrong VOZAGENT_ORDER=%s" % (i, order))
            h.log("wrong override: %s requests" % c.last_run()["requests"])
        h.log("override[%s]: %.1fs" % (order, time.monotonic() - t0))


def unknown(order, seed):
    n, page = 400, 10
    with h.Case("order_unknown", order=order, seed=seed, calls=0, page_size=page) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=n)
        c.sim.config(delay_ms=40)
        p = c.spawn("backfill")
        c.wait_for("pages committed", lambda: p.poll() is not None or
                   ((c.sync_state() or {}).get("backfill_offset") or 0) >= 10 * page,
                   timeout=30)
        check(p.poll() is None, "the backfill ended before the flip")
        c.sim.config(order=OTHER[order])
        c.expect_rc(c.wait(p, 60), 0, "backfill across the flip")
        c.sim.config(delay_ms=0)
        st = c.sync_state()
        check(st["api_order"] == "unknown", "a scan that saw both orders recorded api_order "
              "%r" % st["api_order"])
        f, out = status_fields(c)
        check(f.get("API order") == "unknown", "status shows API order %r:\n%s"
              % (f.get("API order"), out))
        c.sim.add(count=5)
        run = once_exact(c, "the once after an unknown order")
        whole = h.scan_pages(n, page)
        h.log("once with api_order unknown: %s requests (whole list %d pages)"
              % (run["requests"], whole))
        check(run["requests"] >= whole, "with the order unknown, the pass made %s requests, "
              "fewer than the whole list (%d pages): it guessed" % (run["requests"], whole))
        h.log("unknown[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(detect_and_flip, "order detected, flipped", 3701) +
           h.property_orders(override, "VOZAGENT_ORDER", 3702) +
           h.property_orders(unknown, "order unknown", 3703))
