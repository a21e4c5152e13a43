#!/usr/bin/env python3
"""Issue 4, "Prove it": under a 15% random fault rate (seeded; the simulator's
default retriable kinds: 429, 5xx, reset, cut body, HTML, error object, invalid
JSON, not objects) a backfill of a few thousand calls completes, exit 0, and the
mirror is exact, in both list orders. Every page was fetched successfully exactly
once (no page skipped, none written twice), every fault cost exactly one extra
request, and sync_runs.requests agrees with the simulator. Then an incremental
`once` under the same fault rate picks up new and finished calls exactly."""

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

CALLS, PAGE, RATE = 2000, 40, 0.15


def scenario(order):
    seed = 24 if order == "oldest_first" else 34
    with h.Case("fault_rate", order=order, seed=431, calls=CALLS, page_size=PAGE) as c:
        rep = fl.faults(c.sim, rate=RATE, seed=seed)
        h.log("fault rate %.2f, seed %d, kinds %s" % (RATE, seed,
                                                     [k["kind"] for k in rep["rate"]["kinds"]]))
        r = c.run("backfill", timeout=180)
        c.expect_rc(r, 0, "backfill under a %d%% fault rate" % (RATE * 100))
        c.assert_exact("after the backfill under faults")
        reqs = fl.api_reqs(c.sim)
        hit = [x for x in reqs if x["fault"]]
        counts = fl.injected(c.sim) and c.sim.control("GET", "faults")["counts"]
        h.log("%d requests, %d faults injected (%.0f%%): %s"
              % (len(reqs), len(hit), 100.0 * len(hit) / len(reqs), counts))
        check(len(hit) >= 3, "only %d faults were injected: the test proves nothing" % len(hit))
        ok = [x for x in reqs if not x["fault"]]
        offsets = [x["offset"] for x in ok]
        expect = list(range(0, CALLS, PAGE - 1))
        if expect[-1] + PAGE <= CALLS:            # a full last page: one more, empty or short
            expect.append(expect[-1] + PAGE - 1)
        check(offsets == expect, "the pages fetched successfully are not each page once, in "
              "order: %s ... (expected %s ...)" % (offsets[:12], expect[:12]))
        for i, x in enumerate(reqs[:-1]):
            if x["fault"]:
                check(reqs[i + 1]["offset"] == x["offset"], "after the fault on request #%s "
                      "(offset %s) the daemon asked for offset %s" % (x["seq"], x["offset"],
                                                                     reqs[i + 1]["offset"]))
        # A reset on a reused keep-alive connection may be re-sent by libcurl itself
        # ("Connection died, retrying a fresh connect"): the daemon never sees it.
        delays = fl.retry_delays(r.err)
        absorbed = len(hit) - len(delays)
        resets = sum(1 for x in hit if x["fault"] == "reset")
        check(0 <= absorbed <= resets, "%d 'retrying' messages for %d faults (%d resets)"
              % (len(delays), len(hit), resets))
        run = c.sync_runs()[-1]
        check(run["outcome"] == "ok" and run["requests"] == len(reqs) - absorbed and
              run["rejected"] == 0,
              "sync_runs: outcome %s, requests %s (the simulator saw %d, %d re-sent by "
              "libcurl), rejected %s" % (run["outcome"], run["requests"], len(reqs), absorbed,
                                         run["rejected"]))
        if absorbed:
            h.log("%d reset(s) re-sent by libcurl on a fresh connection, unseen by the daemon"
                  % absorbed)

        # An incremental pass under the same fault rate.
        c.sim.add(count=120)
        c.sim.add(late=10, within_seconds=1800)
        c.sim.finish(count=15)
        c.sim.clear_requests()
        r = c.run("once", timeout=120)
        c.expect_rc(r, 0, "once under a %d%% fault rate" % (RATE * 100))
        c.assert_exact("after once under faults")
        reqs = fl.api_reqs(c.sim)
        h.log("once: %d requests, %d faulted" % (len(reqs), sum(1 for x in reqs if x["fault"])))
        fl.assert_secret_free(c, what="fault rate")


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "15% fault rate"))
