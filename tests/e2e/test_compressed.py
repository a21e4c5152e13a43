#!/usr/bin/env python3
"""Compressed pages, in both API orders:
- a backfill over gzip-encoded pages (the daemon asks for them with Accept-Encoding, the
  simulator compresses every page) mirrors the API exactly, field by field, and its
  requests share one kept-alive connection;
- a gzip_bomb page - a few KiB on the wire, valid JSON whose whitespace inflates past
  max_body_size - fails as over the cap, counted after decompression: five attempts,
  exit 75, the message names the cap, the run is recorded failed with it, and nothing
  of that page is written (the page before it stays committed, exact), and the daemon's
  peak memory stays far below the 64 MiB the bomb inflates to. The bomb is a valid page,
  so a cap counted on compressed bytes would let it through."""

import os
import re

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

CALLS, PAGE = 120, 20
ENV = {"VOZAGENT_MAX_BODY_SIZE": "128k", "VOZAGENT_HTTP_TIMEOUT": "5s"}
CAP = 128 * 1024
BOMB = {"kind": "gzip_bomb", "bytes": 64 << 20}     # 64 MiB inflated, about 64 KiB sent
RSS_MAX_KIB = 32 << 10


def gzip_backfill(order):
    with h.Case("gzip_backfill", order=order, seed=811, calls=CALLS, page_size=PAGE) as c:
        c.sim.config(gzip=True)
        c.sim.clear_requests()
        r = c.run("backfill", env=ENV)
        c.expect_rc(r, 0, "backfill over gzip pages")
        c.assert_exact("after a backfill over gzip pages")
        reqs = fl.api_reqs(c.sim)
        plain = [x for x in reqs if x["status"] == 200 and x["encoding"] != "gzip"]
        check(reqs and not plain, "%d of %d pages went uncompressed: the daemon did not "
              "accept gzip? %s" % (len(plain), len(reqs), fl.describe(plain)))
        conns = {x["conn"] for x in reqs}
        check(len(conns) == 1, "%d requests used %d connections, expected one kept alive: %s"
              % (len(reqs), len(conns), sorted(conns)))
        h.log("%d gzip pages, %d connection(s), mirror exact" % (len(reqs), len(conns)))


def gzip_bomb(order):
    with h.Case("gzip_bomb", order=order, seed=812, calls=CALLS, page_size=PAGE) as c:
        calls = c.sim.calls()
        c.sim.config(gzip=True)
        # the daemon's own peak memory, from GNU time wrapped around it
        outer = os.environ.get("VOZAGENT_E2E_WRAPPER")
        os.environ["VOZAGENT_E2E_WRAPPER"] = "/usr/bin/time -f maxrss_kib=%%M %s" % (outer or "")
        try:
            r, reqs = fl.fault_at_request(c, "backfill", 2, [BOMB] * 5, env=ENV)
        finally:
            if outer is None:
                os.environ.pop("VOZAGENT_E2E_WRAPPER")
            else:
                os.environ["VOZAGENT_E2E_WRAPPER"] = outer
        c.expect_rc(r, 75, "backfill whose page 2 is a gzip bomb, five times")
        m = re.search(r"maxrss_kib=(\d+)", r.err)
        rss = int(m.group(1)) if m else None
        # under ASan the daemon's RSS is mostly shadow memory: the plain tree checks it
        check(rss is not None and (rss < RSS_MAX_KIB or os.environ.get("VOZAGENT_E2E_SANITIZED")),
              "peak RSS %s KiB while refusing a 64 MiB bomb: the body was held in memory?" % rss)
        off = reqs[1]["offset"]
        check(len(reqs) == 6 and all(x["offset"] == off and x["fault"] == "gzip_bomb"
                                     for x in reqs[1:]),
              "expected page 1, then 5 attempts at the bomb: %s" % fl.describe(reqs))
        want = "larger than the %d-byte cap" % CAP
        check(want in r.err and "decompression" in r.err,
              "the daemon's message does not name the cap counted after decompression "
              "(%r):\n%s" % (want, h.tail(r.err, 6)))
        run = c.sync_runs()[-1]
        check(run["outcome"] == "failed" and want in (run["error"] or ""),
              "sync_runs: outcome %s, error %r; expected failed, naming the cap"
              % (run["outcome"], run["error"]))
        sent = fl.injected(c.sim)[-1]["outcome"]
        head = calls[:PAGE]
        ids = fl.mirror_ids(c)
        check(ids == {x["id"] for x in head}, "after the bomb the mirror holds %d calls; "
              "expected exactly page 1 (%d): the bomb page was written?" % (len(ids), PAGE))
        d = h.mirror_diff(head, c.mirror_rows(), c.source)
        check(not d, "committed page differs:\n  " + "\n  ".join(d))
        check(not fl.rejects(c), "rejects were written for the bomb page: %s" % fl.rejects(c))
        h.log("gzip bomb (%s): exit 75, daemon's peak RSS %d KiB; %s"
              % (sent, rss, h.tail(r.err, 1)))


if __name__ == "__main__":
    h.main(h.both_orders(gzip_backfill, "a backfill over gzip pages is exact") +
           h.both_orders(gzip_bomb, "a gzip bomb fails as over the cap"))
