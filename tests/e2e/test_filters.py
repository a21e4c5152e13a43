#!/usr/bin/env python3
"""Filters: with assistant_id and call_type configured, the daemon asks the API for
that subset only (every request carries both filters) and the mirror equals the
subset exactly, after backfill and after once; a status value the API does not know
exits 78."""

import harness as h
from harness import check


def scenario(order):
    with h.Case("filters", order=order, seed=111, calls=400, page_size=30) as c:
        calls = c.sim.calls()
        assistant = calls[len(calls) // 2]["assistant_id"]
        env = {"VOZAGENT_ASSISTANT_ID": assistant, "VOZAGENT_CALL_TYPE": "outbound"}

        def subset():
            return [x for x in c.sim.calls()
                    if x.get("assistant_id") == assistant and x.get("call_type") == "outbound"]

        def check_requests(what):
            reqs = h.api_log_since(c.sim.requests())
            wrong = [x["params"] for x in reqs if x["params"].get("assistant_id") != assistant
                     or x["params"].get("call_type") != "outbound"]
            check(reqs and not wrong, "%s: requests without the filters: %s" % (what, wrong[:3]))
            c.sim.clear_requests()

        want = subset()
        check(10 < len(want) < len(calls) // 2, "test data: subset of %d" % len(want))
        c.expect_rc(c.run("backfill", env=env), 0)
        check_requests("backfill")
        d = h.mirror_diff(want, c.mirror_rows(), c.source)
        check(not d, "mirror != the filtered subset after backfill:\n  " + "\n  ".join(d))
        h.log("backfill mirrored the subset of %d calls" % len(want))

        c.sim.add(count=40)
        c.sim.add(late=10, within_seconds=3600)
        c.sim.finish(count=15)
        c.expect_rc(c.run("once", env=env), 0)
        check_requests("once")
        want = subset()
        d = h.mirror_diff(want, c.mirror_rows(), c.source)
        check(not d, "mirror != the filtered subset after once:\n  " + "\n  ".join(d))
        h.log("once mirrored the subset of %d calls" % len(want))

        r = c.run("once", env={"VOZAGENT_STATUS": "done"}, timeout=30)
        c.expect_rc(r, 78, "status filter the API does not know")
        check("status" in r.err, "the message does not name the status filter:\n%s"
              % h.tail(r.err, 5))


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "filters"))
