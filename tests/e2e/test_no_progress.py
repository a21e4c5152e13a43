#!/usr/bin/env python3
"""No scan runs unbounded: an API (or a cache in front of it) that answers every offset
near or past the end of the list with the last full page never gives a scan the short
page that ends it. Every such page lists only calls the scan has read already; after a
few of them in a row the scan stops with a clear error, instead of paging forever.

repeat_backfill: `backfill` exits 75 within a bounded number of requests, says why, and
  its sync_runs row is 'failed' with that message; the calls it read are mirrored. Once
  the API behaves, a backfill completes and the mirror is exact.
repeat_once: the same for `once` on an empty mirror (a whole-list scan), then for `once`
  after a backfill (tail scan and in-progress list), each bounded.
repeat_run: `run` fails each pass with the message, keeps running, and its next passes
  try again (bounded each); once the API behaves, a pass succeeds and the mirror is exact;
  SIGTERM ends it with exit 0.
wrap_backfill, wrap_once: an API (or cache) that answers offsets past the end from the start
  again (offset modulo N, never a short page): every page joins and lists calls new to the
  anchor, so only a scan-wide check sees it. `backfill` and `once` on an empty mirror exit
  75 within a bounded number of requests (about two laps) with a message that says the
  list repeats itself; the pages before the one that shows it are mirrored (the calls of
  that page may not be), none marked deleted, nothing invented; once the API
  behaves, a backfill makes the mirror exact.
drift_ahead: not mistaken for it: while a backfill pages, page_size - 2 calls land ahead
  of its position after every request (pages repeat all but two known calls); the backfill
  completes, and a `once` afterwards makes the mirror exact.

Each in both orders. E2E_SEED=N replays a seed of drift_ahead, E2E_ORDER picks one order."""

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

N, PAGE = 250, 50
MSG = "already read"


def bound_requests(n=N):
    """Requests of one whole-list scan, plus the pages that show the API repeats itself,
    plus retries' slack."""
    return h.scan_pages(n, PAGE) + 3 + 2


def failed_with_message(c, r, what):
    c.expect_rc(r, 75, what)
    check(MSG in r.err, "%s: stderr does not say the API repeats pages:\n%s"
          % (what, h.tail(r.err)))
    run = c.last_run()
    check(run["outcome"] == "failed" and MSG in (run["error"] or ""),
          "%s: last sync_runs row: %s / %s" % (what, run["outcome"], run["error"]))


def repeat_backfill(order):
    with h.Case("repeat_backfill", order=order, seed=71, calls=N, page_size=PAGE) as c:
        c.sim.config(repeat_last_page=True)
        seq = c.sim.last_seq()
        r = c.run("backfill", timeout=60)
        failed_with_message(c, r, "backfill against a repeating API")
        reqs = h.api_log_since(c.sim.requests(), seq)
        h.log("backfill gave up after %d requests" % len(reqs))
        check(len(reqs) <= bound_requests(), "the backfill made %d requests for a %d-call "
              "list (bound %d)" % (len(reqs), N, bound_requests()))
        check(c.count_calls() == N, "%d calls mirrored, the API lists %d"
              % (c.count_calls(), N))
        check(int(c.scalar("select count(*) from vozagent.calls where deleted_at is not null"))
              == 0, "calls marked deleted by a failed backfill")
        c.sim.config(repeat_last_page=False)
        c.expect_rc(c.run("backfill"), 0, "backfill once the API behaves")
        c.assert_exact("after the API behaves again")


def repeat_once(order):
    with h.Case("repeat_once", order=order, seed=72, calls=N, page_size=PAGE) as c:
        c.sim.config(repeat_last_page=True)
        seq = c.sim.last_seq()
        failed_with_message(c, c.run("once", timeout=60), "once on an empty mirror")
        reqs = h.api_log_since(c.sim.requests(), seq)
        check(len(reqs) <= bound_requests(), "once made %d requests (bound %d)"
              % (len(reqs), bound_requests()))
        c.sim.config(repeat_last_page=False)
        c.expect_rc(c.run("backfill"), 0, "backfill")
        c.sim.add(count=3)
        c.sim.config(repeat_last_page=True)
        seq = c.sim.last_seq()
        r = c.run("once", timeout=60)
        reqs = h.api_log_since(c.sim.requests(), seq)
        h.log("once after a backfill: exit %s after %d requests" % (r.rc, len(reqs)))
        # the tail may end on its lookback threshold before the end; whatever it reads is
        # bounded, and a failure says why
        check(r.rc == 0 or (r.rc == 75 and MSG in r.err), "once after a backfill: exit %s:\n%s"
              % (r.rc, h.tail(r.err)))
        check(len(reqs) <= 2 * bound_requests(), "once made %d requests" % len(reqs))
        c.sim.config(repeat_last_page=False)
        c.expect_rc(c.run("once"), 0, "once once the API behaves")
        c.assert_exact("after the API behaves again")


def repeat_run(order):
    with h.Case("repeat_run", order=order, seed=73, calls=N, page_size=PAGE,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        c.sim.config(repeat_last_page=True)
        seq = c.sim.last_seq()
        p = c.spawn("run")

        def failed_runs():
            if not c.has_table("vozagent.sync_runs"):
                return []
            return [x for x in c.sync_runs() if x["outcome"] == "failed"]
        c.wait_for("three failed passes", lambda: p.poll() is not None or
                   len(failed_runs()) >= 3, timeout=60)
        check(p.poll() is None, "run exited (%s) on a repeating API" % p.returncode)
        runs = failed_runs()
        check(all(MSG in (x["error"] or "") for x in runs), "failed passes without the "
              "message: %s" % [x["error"] for x in runs])
        last_failed = max(int(x["id"]) for x in c.sync_runs())
        c.sim.config(repeat_last_page=False)
        nreq = len(h.api_log_since(c.sim.requests(), seq))
        c.wait_for("a backfill pass that succeeds once the API behaves", lambda:
                   p.poll() is not None or [x for x in c.sync_runs() if int(x["id"]) >
                                            last_failed and x["mode"] == "backfill" and
                                            x["outcome"] == "ok"], timeout=60)
        check(p.poll() is None, "run exited (%s)" % p.returncode)
        c.assert_exact("once the API behaves again")
        h.terminate(p)
        r = c.wait(p, 20)
        c.expect_rc(r, 0, "run after SIGTERM")
        runs = c.sync_runs()
        bad = [x for x in runs if x["outcome"] == "failed"]
        worst = max(int(x["requests"]) for x in bad)
        h.log("run: %d passes failed before the API behaved (%d requests in all by then, at "
              "most %d per pass)" % (len(bad), nreq, worst))
        check(worst <= bound_requests(), "a failed pass made %d requests (bound %d)"
              % (worst, bound_requests()))


WRAP_N, WRAP_PAGE = 300, 10
WRAP_MSG = "the list repeats itself past its end"


def wrap_case(order, command, seed):
    with h.Case("wrap_" + command, order=order, seed=seed, calls=WRAP_N,
                page_size=WRAP_PAGE) as c:
        c.sim.config(wrap_around=True)
        seq = c.sim.last_seq()
        r = c.run(command, timeout=60)
        reqs = h.api_log_since(c.sim.requests(), seq)
        h.log("%s against a list that wraps: exit %s after %d requests"
              % (command, r.rc, len(reqs)))
        c.expect_rc(r, 75, "%s against a list that wraps" % command)
        check(WRAP_MSG in r.err, "%s: stderr does not say the list repeats itself:\n%s"
              % (command, h.tail(r.err)))
        run = c.last_run()
        check(run["outcome"] == "failed" and WRAP_MSG in (run["error"] or ""),
              "%s: last sync_runs row: %s / %s" % (command, run["outcome"], run["error"]))
        # a sampled call of the first lap shows up again in the second
        bound = 2 * h.scan_pages(WRAP_N, WRAP_PAGE) + 5
        check(len(reqs) <= bound, "%s made %d requests for a %d-call list (bound %d)"
              % (command, len(reqs), WRAP_N, bound))
        # the page that shows the repeat is not written, as with the stall rule
        check(WRAP_N - WRAP_PAGE <= c.count_calls() <= WRAP_N, "%d calls mirrored, the API "
              "lists %d" % (c.count_calls(), WRAP_N))
        check(int(c.scalar("select count(*) from vozagent.calls where deleted_at is not null"))
              == 0, "calls marked deleted by a failed %s" % command)
        c.sim.config(wrap_around=False)
        c.expect_rc(c.run("backfill"), 0, "backfill once the API behaves")
        c.assert_exact("after the API behaves again")


def wrap_backfill(order):
    wrap_case(order, "backfill", 74)


def wrap_once(order):
    wrap_case(order, "once", 75)


def drift_ahead(order, seed):
    n, page = 400, 20
    with h.Case("drift_ahead", order=order, seed=seed, calls=n, page_size=page) as c:
        c.sim.reset(seed=seed, calls=n)
        before = {x["id"] for x in c.sim.calls()}
        # newest first, new calls land at offset 0; oldest first, late calls started
        # anywhere in the history, many of them before the pass's position
        span = (h.started_us(c.sim.calls()[-1 if order == "oldest_first" else 0]) -
                h.started_us(c.sim.calls()[0 if order == "oldest_first" else -1])) // 10**6
        kinds = {"new": 1} if order == "newest_first" else {"late": 1}
        c.sim.mutator(seed=seed, every=1, per=page - 2, kinds=kinds,
                      late_within_seconds=max(60, span), max=(page - 2) * 60)
        r = c.run("backfill", timeout=120)
        rep = c.sim.mutator(off=True)
        h.log("backfill under drift: exit %s; %d calls added while it paged; %d drift "
              "re-reads" % (r.rc, rep["total"], int(c.last_run()["drift_rereads"])))
        c.expect_rc(r, 0, "backfill while calls land ahead of it")
        check(MSG not in r.err, "drift mistaken for a repeating API:\n%s" % h.tail(r.err))
        check(rep["total"] >= (page - 2) * 10, "test data: only %d calls added" % rep["total"])
        rows = {x["id"] for x in c.mirror_rows()}
        check(before <= rows, "%d calls listed before the backfill are not mirrored"
              % len(before - rows))
        c.expect_rc(c.run("once"), 0, "once after the backfill")
        c.assert_exact("after the backfill under drift and a once")


if __name__ == "__main__":
    h.main(h.both_orders(repeat_backfill, "repeat_last_page: backfill") +
           h.both_orders(repeat_once, "repeat_last_page: once") +
           h.both_orders(repeat_run, "repeat_last_page: run") +
           h.both_orders(wrap_backfill, "wrap_around: backfill") +
           h.both_orders(wrap_once, "wrap_around: once") +
           h.property_orders(drift_ahead, "many calls inserted ahead", 3401))
