#!/usr/bin/env python3
"""Issue 4, "From the API": every fault kind on its own, injected by the simulator
into one chosen request of a small backfill, gets the documented answer.

- retried (5xx, reset, hang and slow past http_timeout, a cut body in three ways,
  a 200 that is HTML / an error object / invalid JSON / not objects / larger than
  max_body_size): exit 0, the mirror exact, exactly one extra request for the same
  offset (in the simulator's log and in sync_runs.requests), a backoff within 1 s;
- fatal (401, 403, 400 with and without filters, the simulator's own 400 for a bad
  filter; `backfill` and `run`): the documented exit code within seconds, no retry,
  the message names where the key came from (401/403) or the URL and the API's
  body (400), never the key; the pages before stay committed;
- beyond the attempts (five partial bodies in a row, a refused connection, a DNS
  failure): exit 75 after 5 attempts with capped, jittered backoff; sync_runs says
  failed and why; nothing of the broken page is written, the cursor is not ahead of
  the data, and the next backfill resumes there and ends exact; `run` tries again
  at the next interval;
- 429: the retry waits Retry-After (seconds, HTTP date, 5 s when absent, at most
  300 s); a lone 429 after a couple of requests teaches no rate, so the pass then goes
  on at speed (the rate learnt from many is unit-tested in test_pace and measured in
  BENCHMARKS.md behind a real limit).
Every output and the database are checked for the key at the end of each case."""

import email.utils
import re
import signal
import time

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

CALLS, PAGE = 100, 20
BASE_ENV = {"VOZAGENT_HTTP_TIMEOUT": "2s", "VOZAGENT_MAX_BODY_SIZE": "128k"}

# (label, fault spec, what the daemon's warning must mention)
RETRIED = [
    ("500", "500", "HTTP 500"),
    ("502 (HTML proxy page)", "502", "HTTP 502"),
    ("503", "503", "HTTP 503"),
    ("504 (HTML proxy page)", "504", "HTTP 504"),
    # twice: libcurl itself re-sends a request once when a reused keep-alive connection
    # dies before any answer ("Connection died, retrying a fresh connect"), so one reset
    # may never reach the daemon; the second one comes on a fresh connection and does
    ("reset (TCP RST, no answer), twice", ["reset", "reset"], None),
    ("hang (no answer, past http_timeout)", {"kind": "hang", "seconds": 30}, None),
    ("slow (trickled body, past http_timeout)", "slow", None),
    ("cut body (Content-Length, FIN)", "cut", None),
    ("cut body (RST)", {"kind": "cut", "rst": True, "fraction": 0.3}, None),
    ("cut body (chunked)", {"kind": "cut", "transfer": "chunked"}, None),
    ("200 HTML page", "html", "bad body"),
    ("200 JSON error object", "json_error", "bad body"),
    ("200 invalid JSON after real records", "invalid_json", "bad body"),
    ("200 array of numbers", "not_objects", "bad body"),
    ("200 larger than max_body_size", {"kind": "huge", "bytes": 300000}, "cap"),
]

REFUSED = re.compile(r"(?i)\bkey\b.*\b(refused|rejected|invalid|denied)|"
                     r"\b(refused|rejected|denied)\b.*\bkey\b")


def clean_backfill(c):
    """The control run: no fault. Returns the number of API requests it takes."""
    fl.reset_mirror(c)
    r = c.run("backfill", env=BASE_ENV)
    c.expect_rc(r, 0, "control run without faults")
    c.assert_exact("after a backfill without faults")
    n = len(fl.api_reqs(c.sim))
    h.log("control: a clean backfill of %d calls takes %d requests" % (CALLS, n))
    return n


def retried_faults():
    with h.Case("faults_retried", seed=401, calls=CALLS, page_size=PAGE) as c:
        base = clean_backfill(c)
        for label, spec, mention in RETRIED:
            queue = spec if isinstance(spec, list) else [spec]
            n = len(queue)
            fl.reset_mirror(c)
            r, reqs = fl.fault_at_request(c, "backfill", 2, queue, env=BASE_ENV)
            c.expect_rc(r, 0, label)
            fl.check_log_lines(r, label)
            c.assert_exact("after %s" % label)
            check(len(reqs) == base + n, "%s: %d requests, expected %d (%d retry): %s"
                  % (label, len(reqs), base + n, n, fl.describe(reqs)))
            check(all(x["offset"] == reqs[1]["offset"] for x in reqs[1:n + 2]) and
                  not reqs[n + 1]["fault"],
                  "%s: the requests after the fault are not the same page again: %s"
                  % (label, fl.describe(reqs)))
            delays = fl.retry_delays(r.err)
            absorbed = n - len(delays)          # re-sent by libcurl (reset only)
            check(len(delays) == n or (queue[0] == "reset" and 1 <= len(delays) <= n),
                  "%s: expected %d 'retrying' message(s), got %s" % (label, n, delays))
            run = c.sync_runs()[-1]
            check(run["outcome"] == "ok" and run["requests"] == len(reqs) - absorbed,
                  "%s: sync_runs outcome %s, requests %s; the simulator saw %d%s"
                  % (label, run["outcome"], run["requests"], len(reqs),
                     " (%d re-sent by libcurl)" % absorbed if absorbed else ""))
            fl.check_backoff(delays, label)
            if mention:
                check(mention in r.err, "%s: the warning does not mention %r:\n%s"
                      % (label, mention, h.tail(r.err, 5)))
            outcome = fl.injected(c.sim)[-1]["outcome"]
            if label.startswith(("hang", "slow")):
                # the client gave up after http_timeout (2 s), not the server
                m = re.search(r"(\d+\.\d+) s$", outcome)
                check(m and 1.8 <= float(m.group(1)) <= h.scaled(4),
                      "%s: the daemon did not give up after http_timeout = 2s: %s"
                      % (label, outcome))
            h.log("%-42s exit 0, exact, %d requests (+%d for offset %s), retried after "
                  "%ss; wire: %s%s" % (label, len(reqs), n, reqs[1]["offset"],
                                       "/".join("%.1f" % d for d in delays), outcome,
                                       "; %d re-sent by libcurl" % absorbed if absorbed else ""))
        fl.assert_secret_free(c, what="retried faults")


def fatal_faults():
    with h.Case("faults_fatal", seed=402, calls=CALLS, page_size=PAGE) as c:
        calls = c.sim.calls()
        soft = fl.Soft()

        def fatal(label, cmd, spec, rc, env=None, config=None):
            fl.reset_mirror(c)
            env = dict(BASE_ENV, **(env or {}))
            if spec is None:
                c.sim.clear_requests()
                r = c.run(cmd, env=env, config=config, timeout=30)
                reqs = fl.api_reqs(c.sim)
            else:
                r, reqs = fl.fault_at_request(c, cmd, 2, [spec], env=env, timeout=30,
                                              config=config)
            c.expect_rc(r, rc, label)
            check(r.elapsed < h.scaled(8), "%s: took %.1fs to stop" % (label, r.elapsed))
            check(not fl.retry_delays(r.err), "%s: the daemon retried:\n%s"
                  % (label, h.tail(r.err, 5)))
            check(len(reqs) == (1 if spec is None else 2),
                  "%s: requests %s (a retry?)" % (label, fl.describe(reqs)))
            runs = c.sync_runs()
            check(runs and runs[-1]["outcome"] == "failed" and runs[-1]["error"],
                  "%s: sync_runs %s" % (label, runs[-1:]))
            fl.check_log_lines(r, label, soft)
            h.log("%s: exit %s in %.2fs after %d request(s): %s"
                  % (label, r.rc, r.elapsed, len(reqs), h.tail(r.err, 1)))
            return r, reqs

        def first_page_kept(label):
            # the page before the fault was committed, and nothing else
            ids = fl.mirror_ids(c)
            head = {x["id"] for x in calls[:PAGE]}
            check(ids == head, "%s: the mirror holds %d calls, expected the first page (%d)"
                  % (label, len(ids), PAGE))

        r, _ = fatal("401 (key from VOZAGENT_API_TOKEN)", "backfill", "401", 77)
        check(REFUSED.search(r.err) and "api_token (VOZAGENT_API_TOKEN)" in r.err,
              "401: the message does not say the key was refused and that it came from "
              "api_token (VOZAGENT_API_TOKEN):\n%s" % h.tail(r.err, 3))
        first_page_kept("401")

        tokfile = c.write_config(c.token + "\n", name="api_token")
        conf = c.write_config("# line 1\napi_token_file = %s\n" % tokfile, name="file-key.conf")
        r, _ = fatal("403 (key from api_token_file)", "backfill", "403", 77,
                     env={"VOZAGENT_API_TOKEN": None}, config=conf)
        origin = "api_token_file '%s' (%s:2)" % (tokfile, conf)
        check(REFUSED.search(r.err) and origin in r.err,
              "403: the message does not say the key was refused and that it came from "
              "%s:\n%s" % (origin, h.tail(r.err, 3)))
        first_page_kept("403")

        api_msg = "offset must be below 10000 for this plan"
        r, reqs = fatal("400 without filters", "backfill", {"kind": "400", "message": api_msg},
                        70)
        url = "%s/calls?limit=%d&offset=%d" % (c.sim.api_url, PAGE, reqs[1]["offset"])
        check(url in r.err and api_msg in r.err, "400: the message lacks the URL %s or the "
              "API's message %r:\n%s" % (url, api_msg, h.tail(r.err, 3)))
        check(api_msg in (c.sync_runs()[-1]["error"] or ""), "400: sync_runs.error lacks the "
              "API's message")
        first_page_kept("400")

        r, reqs = fatal("400 with a call_type filter", "backfill", "400", 78,
                        env={"VOZAGENT_CALL_TYPE": "inbound"})
        check("call_type=inbound" in r.err and "filter" in r.err,
              "400 with filters: the message shows neither the filter in the URL nor points "
              "at the filters:\n%s" % h.tail(r.err, 3))

        r, reqs = fatal("the API's own 400 for status=bogus", "backfill", None, 78,
                        env={"VOZAGENT_STATUS": "bogus"})
        check(reqs[0]["status"] == 400 and "status must be one of" in r.err,
              "status=bogus: the API's message is not shown:\n%s" % h.tail(r.err, 3))

        fatal("run: 403 mid-pass", "run", "403", 77, env={"VOZAGENT_POLL_INTERVAL": "1s"})
        fatal("once: 401 mid-pass", "once", "401", 77)
        fl.assert_secret_free(c, what="fatal faults")
        soft.done()


PARTIAL = ["invalid_json", "cut", {"kind": "cut", "rst": True},
           {"kind": "cut", "transfer": "chunked"}, {"kind": "huge", "bytes": 300000}]


def exhausted():
    with h.Case("faults_exhausted", seed=403, calls=CALLS, page_size=PAGE) as c:
        calls = c.sim.calls()
        all_delays = []

        def gave_up(r, label, mention):
            c.expect_rc(r, 75, label)
            fl.check_log_lines(r, label)
            delays = fl.retry_delays(r.err)
            check(len(delays) == 4, "%s: %d retries, expected 4 (5 attempts): %s"
                  % (label, len(delays), delays))
            fl.check_backoff(delays, label)
            all_delays.extend((k, d) for k, d in enumerate(delays, 1))
            run = c.sync_runs()[-1]
            check(run["outcome"] == "failed" and mention in (run["error"] or ""),
                  "%s: sync_runs outcome %s, error %r (expected to mention %r)"
                  % (label, run["outcome"], run["error"], mention))
            h.log("%s: exit 75 after %.1fs, backoff %s; sync_runs.error: %s"
                  % (label, r.elapsed, delays, h.short(run["error"], 120)))
            return run

        # Five broken bodies in a row for page 2, each carrying part of its records.
        fl.reset_mirror(c)
        r, reqs = fl.fault_at_request(c, "backfill", 2, PARTIAL, env=BASE_ENV)
        off = reqs[1]["offset"]
        run = gave_up(r, "5 partial bodies for page 2", "offset %d" % off)
        check(len(reqs) == 6 and all(x["offset"] == off for x in reqs[1:]),
              "5 partial bodies: requests %s" % fl.describe(reqs))
        check(run["requests"] == 6, "sync_runs.requests = %s, the simulator saw 6"
              % run["requests"])
        head = calls[:PAGE]
        ids = fl.mirror_ids(c)
        check(ids == {x["id"] for x in head}, "after giving up on page 2 the mirror holds %d "
              "calls; expected exactly page 1 (%d): part of a broken page was written?"
              % (len(ids), PAGE))
        d = h.mirror_diff(head, c.mirror_rows(), c.source)
        check(not d, "committed page differs:\n  " + "\n  ".join(d))
        st = fl.state(c)
        check(st["backfill_offset"] is not None and st["backfill_offset"] <= PAGE,
              "the cursor is ahead of the data: backfill_offset %s with %d calls committed"
              % (st["backfill_offset"], PAGE))
        h.log("after giving up: page 1 exact, backfill_offset %s" % st["backfill_offset"])

        # The next backfill resumes at the cursor and ends exact.
        c.sim.clear_requests()
        r = c.run("backfill", env=BASE_ENV)
        c.expect_rc(r, 0, "backfill after the failed one")
        c.assert_exact("after the resumed backfill")
        reqs = fl.api_reqs(c.sim)
        check(reqs[0]["offset"] == st["backfill_offset"], "the next backfill started at "
              "offset %s, not at the cursor %s" % (reqs[0]["offset"], st["backfill_offset"]))

        # Nothing listening, and no such host.
        for label, url, mention in (
                ("connection refused", "http://127.0.0.1:%d/v1" % fl.closed_port(), "onnect"),
                ("DNS failure", "https://nonexistent.invalid/v1", "resolve")):
            fl.reset_mirror(c)
            r = c.run("backfill", env=dict(BASE_ENV, VOZAGENT_API_URL=url), timeout=60)
            run = gave_up(r, label, mention)
            check(run["requests"] == 5, "%s: sync_runs.requests = %s, expected 5"
                  % (label, run["requests"]))

        # full jitter: not every wait is at its cap
        check(any(d < 0.9 * 0.5 * 2 ** k for k, d in all_delays),
              "every backoff was at its cap (no jitter?): %s" % all_delays)

        # `run` fails its pass the same way, and tries again at the next interval.
        fl.reset_mirror(c)
        fl.faults(c.sim, queue=["500"] * 5)
        p = c.spawn("run", env=dict(BASE_ENV, VOZAGENT_POLL_INTERVAL="1s"))
        c.wait_exact("after run's second pass", timeout=40, proc=p)
        runs = c.sync_runs()
        check(runs[0]["outcome"] == "failed" and any(x["outcome"] == "ok" for x in runs[1:]),
              "run's passes: %s" % [(x["mode"], x["outcome"]) for x in runs])
        check(p.poll() is None, "run exited after a failed pass")
        h.terminate(p, signal.SIGTERM)
        r = c.wait(p, 10)
        c.expect_rc(r, 0, "run after SIGTERM")
        h.log("run: first pass failed (%s), the next one completed; SIGTERM -> 0"
              % h.short(runs[0]["error"], 80))
        fl.assert_secret_free(c, what="exhausted retries")


def rate_limited():
    with h.Case("faults_429", seed=404, calls=CALLS, page_size=10) as c:
        fl.reset_mirror(c)
        r = c.run("backfill", env=BASE_ENV)
        c.expect_rc(r, 0)
        g = fl.gaps(fl.api_reqs(c.sim))
        h.log("control: gaps between requests without a 429: max %.3fs" % max(g))

        def limited(label, queue, at):
            fl.reset_mirror(c)
            r, reqs = fl.fault_at_request(c, "backfill", at, queue, env=BASE_ENV)
            c.expect_rc(r, 0, label)
            c.assert_exact("after %s" % label)
            run = c.sync_runs()[-1]
            check(run["requests"] == len(reqs), "%s: sync_runs.requests %s, the simulator "
                  "saw %d" % (label, run["requests"], len(reqs)))
            check(len(reqs) > at + len(queue) and
                  all(x["offset"] == reqs[at - 1]["offset"] for x in reqs[at - 1:at + len(queue)]),
                  "%s: the 429'd page was not simply fetched again: %s"
                  % (label, fl.describe(reqs)))
            g = fl.gaps(reqs)[at - 1:]        # g[0]: from the (first) 429 to the next request
            h.log("%s: gaps from the 429 on: %s" % (label, " ".join("%.2f" % x for x in g)))
            return g

        g = limited("429, Retry-After: 2", [{"kind": "429", "retry_after": "2"}], 3)
        check(g[0] >= 2.0 - 0.03, "Retry-After: 2 but the retry came %.2fs after the 429" % g[0])
        # two requests before the 429 say nothing of a rate (pace needs 8 in the second
        # before it, unit-tested in test_pace): after the pause the pass goes on at speed
        check(g[-1] < h.scaled(0.3), "the requests after a lone 429 stay slow: last gap %.2fs"
              % g[-1])

        g = limited("two 429s in a row, Retry-After: 1",
                    [{"kind": "429", "retry_after": "1"}] * 2, 3)
        check(g[0] >= 0.97 and g[1] >= 0.97, "Retry-After: 1 not honoured: %s" % g)

        g = limited("429 without Retry-After", [{"kind": "429", "retry_after": None}], 1)
        check(4.97 <= g[0] <= h.scaled(8), "429 without Retry-After: retried after %.2fs, "
              "expected the 5s default" % g[0])

        when = email.utils.formatdate(time.time() + 4, usegmt=True)
        g = limited("429, Retry-After: <HTTP date +4s>",
                    [{"kind": "429", "retry_after": when}], 1)
        check(2.0 <= g[0] <= h.scaled(6), "Retry-After: %s: retried after %.2fs" % (when, g[0]))
        # An absurd Retry-After is capped at 300 s (seen in the log; then SIGTERM).
        for label, value in (("Retry-After: 100000", "100000"),
                             ("Retry-After: <HTTP date in 2099>",
                              "Fri, 01 Jan 2099 00:00:00 GMT")):
            fl.reset_mirror(c)
            fl.faults(c.sim, queue=[{"kind": "429", "retry_after": value}])
            p = c.spawn("backfill", env=BASE_ENV)
            m = fl.wait_log(c, p, r"retrying in (\d+(?:\.\d+)?)s")
            h.terminate(p, signal.SIGTERM)
            r = c.wait(p, 10)
            check(float(m.group(1)) == 300.0, "%s: the daemon waits %ss, expected the 300s cap"
                  % (label, m.group(1)))
            c.expect_rc(r, 75, "backfill stopped by SIGTERM while waiting after a 429")
            h.log("%s: waits %ss (the cap); SIGTERM while waiting -> exit 75 in %.2fs"
                  % (label, m.group(1), r.elapsed))
        fl.assert_secret_free(c, what="429")


if __name__ == "__main__":
    h.main([("retried fault kinds", retried_faults),
            ("fatal fault kinds", fatal_faults),
            ("retries exhausted", exhausted),
            ("429 and Retry-After", rate_limited)])
