#!/usr/bin/env python3
"""Answers no well-behaved API gives, that the daemon must survive with a clear record.

- A 503 whose body holds bytes that are not UTF-8 (a UTF-16 surrogate ED A0 80, an
  overlong C0 AF, a code point past U+10FFFF, a stray 0xFF), on every attempt: the pass
  gives up, and sync_runs says outcome 'failed' with the error (the bytes repaired to
  '?'), not 'running'; every line the daemon writes is valid UTF-8.
- A 200 page with more calls than the request's limit (the "oversize" fault: 3 x limit),
  on every attempt, for the first page and for the second: retried like a bad body, then
  the pass fails with "the API returned more than LIMIT calls for limit=LIMIT" and the
  offset; nothing of that page is written (the mirror holds exactly the pages before).
Both in both orders."""

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

CALLS, PAGE = 100, 20
ENV = {"VOZAGENT_HTTP_TIMEOUT": "5s"}
ATTEMPTS = 5

# "busy " ED A0 80 " " C0 AF " " F4 90 80 80 " " FF " now"
BAD_BODY = b"busy \xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 \xff now"


def no_replacement_chars(r, what):
    """harness decodes output with errors='replace': U+FFFD means a byte was not UTF-8."""
    check("\ufffd" not in r.err and "\ufffd" not in r.out,
          "%s: the daemon wrote bytes that are not UTF-8:\n%s" % (what, h.tail(r.err, 8)))


def invalid_utf8_error(order):
    with h.Case("bad_utf8_503", order=order, seed=701, calls=CALLS, page_size=PAGE) as c:
        queue = [{"kind": "503", "body_hex": BAD_BODY.hex()}] * ATTEMPTS
        r, reqs = fl.fault_at_request(c, "backfill", 1, queue, env=ENV)
        c.expect_rc(r, 75, "a 503 with invalid UTF-8 on every attempt")
        check(len(reqs) == ATTEMPTS and all(x["fault"] == "503" for x in reqs),
              "expected %d attempts, each a 503: %s" % (ATTEMPTS, fl.describe(reqs)))
        runs = c.sync_runs()
        check(len(runs) == 1, "expected one run, sync_runs has %d" % len(runs))
        run = runs[-1]
        err = run["error"] or ""
        check(run["outcome"] == "failed",
              "sync_runs outcome is %r (error %r): the final update of the run failed?"
              % (run["outcome"], err))
        check("HTTP 503" in err and "busy ??? ?? ???? ? now" in err and
              "giving up on the page at offset 0" in err,
              "sync_runs.error does not say what happened: %r" % err)
        check("busy ??? ?? ???? ? now" in r.err, "the log does not quote the body, repaired: %s"
              % h.tail(r.err, 5))
        no_replacement_chars(r, "503 with invalid UTF-8")
        check(c.count_calls() == 0, "calls were written")
        h.log("503 with invalid UTF-8: exit 75, sync_runs failed: %s" % h.short(err, 120))


def oversize_page(order):
    with h.Case("oversize_page", order=order, seed=702, calls=CALLS, page_size=PAGE) as c:
        calls = c.sim.calls()
        for at in (1, 2):
            fl.reset_mirror(c)
            queue = [{"kind": "oversize", "factor": 3}] * ATTEMPTS
            r, reqs = fl.fault_at_request(c, "backfill", at, queue, env=ENV)
            label = "oversize page at request %d" % at
            c.expect_rc(r, 75, label)
            no_replacement_chars(r, label)
            off = reqs[at - 1]["offset"]
            bad = reqs[at - 1:]
            check(len(bad) == ATTEMPTS and all(x["offset"] == off and x["fault"] == "oversize"
                                               and x["returned"] > PAGE for x in bad),
                  "%s: expected %d attempts at offset %s, each with more than %d calls: %s"
                  % (label, ATTEMPTS, off, PAGE, fl.describe(reqs)))
            want = "the API returned more than %d calls for limit=%d" % (PAGE, PAGE)
            check(want in r.err, "%s: the log does not say %r:\n%s" % (label, want,
                                                                        h.tail(r.err, 5)))
            run = c.sync_runs()[-1]
            err = run["error"] or ""
            check(run["outcome"] == "failed" and want in err and
                  ("offset %d" % off) in err,
                  "%s: sync_runs outcome %s, error %r (expected %r and offset %d)"
                  % (label, run["outcome"], err, want, off))
            # only the pages before the oversize one
            ids = fl.mirror_ids(c)
            head = {x["id"] for x in calls[:PAGE]} if at == 2 else set()
            check(ids == head, "%s: the mirror holds %d calls, expected %d (the pages before): "
                  "part of the oversize page was written?" % (label, len(ids), len(head)))
            if head:
                d = h.mirror_diff(calls[:PAGE], c.mirror_rows(), c.source)
                check(not d, "%s: the committed page differs:\n  %s" % (label, "\n  ".join(d)))
            h.log("%s: exit 75 after %d attempts at offset %d; mirror holds %d calls; %s"
                  % (label, len(bad), off, len(ids), h.short(err, 140)))
        # the API behaves again: the next backfill completes
        fl.clear_faults(c.sim)
        r = c.run("backfill", env=ENV)
        c.expect_rc(r, 0, "backfill once the API honours limit again")
        c.assert_exact("after the API honours limit again")


if __name__ == "__main__":
    h.main(h.both_orders(invalid_utf8_error, "503 with invalid UTF-8") +
           h.both_orders(oversize_page, "page longer than limit"))
