#!/usr/bin/env python3
"""backfill: the mirror equals the API field by field, in both orders, with pages of
100 over 750 calls and pages of 7 over 119 calls (an exact multiple: the end is an
empty page); sync_runs counts match what the simulator served; a second backfill
over unchanged data rewrites no row."""

import harness as h
from harness import check


def scenario(order, ncalls, page_size, explicit_order, sim_config):
    env = {"VOZAGENT_ORDER": order} if explicit_order else None
    with h.Case("backfill_p%d" % page_size, order=order, seed=100 + page_size, calls=ncalls,
                page_size=page_size, env=env) as c:
        c.sim.config(**sim_config)
        r = c.run("backfill")
        c.expect_rc(r, 0)
        c.assert_exact("after backfill")

        reqs = h.api_log_since(c.sim.requests())
        bad = [x for x in reqs if x["status"] != 200]
        check(not bad, "requests the API refused: %s" % bad[:3])
        check(all(x["limit"] == page_size for x in reqs),
              "limit sent != page_size %d: %s" % (page_size, sorted({x["limit"] for x in reqs})))
        served = sum(x["returned"] for x in reqs)
        check(served >= ncalls, "the simulator served %d records, fewer than the %d calls"
              % (served, ncalls))
        # one keep-alive connection per page in flight (concurrency, 8 by default), reused
        clients = {x["client"] for x in reqs}
        check(len(clients) <= 8 and (len(reqs) < 32 or len(clients) <= len(reqs) // 4),
              "%d requests over %d connections: connections are not reused"
              % (len(reqs), len(clients)))

        runs = c.sync_runs()
        check(len(runs) == 1, "expected 1 sync_runs row, got %d: %s" % (len(runs), runs))
        run = runs[0]
        check(run["mode"] == "backfill" and run["outcome"] == "ok",
              "sync_runs mode/outcome = %s/%s" % (run["mode"], run["outcome"]))
        check(run["finished_at"] is not None and not run["error"],
              "finished_at/error = %s/%s" % (run["finished_at"], run["error"]))
        check(run["requests"] == len(reqs), "sync_runs.requests = %s, the simulator got %d"
              % (run["requests"], len(reqs)))
        pages = [x for x in reqs if x["status"] == 200]
        nonempty = [x for x in pages if x["returned"]]
        check(run["pages"] in (len(pages), len(nonempty)),
              "sync_runs.pages = %s, the simulator served %d pages (%d non-empty)"
              % (run["pages"], len(pages), len(nonempty)))
        check(run["records_seen"] == served, "sync_runs.records_seen = %s, the simulator served %d"
              % (run["records_seen"], served))
        check((run["inserted"], run["updated"], run["rejected"], run["warnings"]) ==
              (ncalls, 0, 0, 0), "inserted/updated/rejected/warnings = %s/%s/%s/%s, expected "
              "%d/0/0/0" % (run["inserted"], run["updated"], run["rejected"], run["warnings"],
                            ncalls))

        state = c.qjson("select coalesce(json_agg(s), '[]') from vozagent.sync_state s "
                        "where source = '%s'" % c.source)
        check(len(state) == 1, "expected one sync_state row for source %s, got %s"
              % (c.source, state))
        detected = state[0].get("api_order")
        check(detected in (None, "unknown", order),
              "sync_state.api_order = %s, the API lists %s" % (detected, order))
        h.log("sync_state.api_order = %s" % detected)

        # Unchanged data: a second full pass rewrites nothing.
        before = c.row_versions()
        r = c.run("backfill")
        c.expect_rc(r, 0, "second backfill")
        after = c.row_versions()
        changed = [k for k in before if before[k] != after.get(k)]
        check(not changed and len(before) == len(after),
              "a backfill over unchanged data rewrote %d rows, e.g. %s"
              % (len(changed), changed[:5]))
        runs = c.sync_runs()
        check(len(runs) == 2 and runs[1]["outcome"] == "ok" and
              (runs[1]["inserted"], runs[1]["updated"]) == (0, 0),
              "second backfill: sync_runs %s" % runs[1:])
        c.assert_exact("after the second backfill")


def scenarios():
    out = []
    for order in ("oldest_first", "newest_first"):
        # Content-Length in one order, chunked in the other; small writes for the small pages.
        big = {"transfer": "length" if order == "oldest_first" else "chunked"}
        small = {"transfer": "chunked" if order == "oldest_first" else "length", "write_size": 97}
        out.append(("backfill 750/100 [%s]" % order,
                    lambda o=order, b=big: scenario(o, 750, 100, False, b)))
        out.append(("backfill 119/7 order=%s set [%s]" % (order, order),
                    lambda o=order, s=small: scenario(o, 119, 7, True, s)))
    return out


if __name__ == "__main__":
    h.main(scenarios())
