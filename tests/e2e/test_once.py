#!/usr/bin/env python3
"""once: on an empty mirror it loads everything; after new calls, late arrivals (up to
an hour behind the newest mirrored call) and finished calls (the oldest unfinished
ones included, started days earlier), one `once` makes the mirror exact again, with
inserted/updated counts that match; a pass over unchanged data rewrites no row."""

import random

import harness as h
from harness import check


def scenario(order):
    rng = random.Random(7)
    with h.Case("once", order=order, seed=31, calls=300, page_size=50) as c:
        r = c.run("once")
        c.expect_rc(r, 0)
        c.assert_exact("after the first once (empty mirror)")
        run = c.sync_runs()[-1]
        check(run["mode"] == "incremental" and run["outcome"] == "ok" and run["inserted"] == 300,
              "first once: sync_runs %s" % run)

        for rnd in range(3):
            calls = c.sim.calls()
            newest = max(h.parse_instant(x["call_started_at"]) for x in calls)
            late = c.sim.add(late=4, within_seconds=3600)
            # The last round adds more than two pages of new calls at once.
            new = c.sim.add(count=(6, 9, 130)[rnd])
            fresh = {x["id"] for x in late + new}
            # Finish calls the mirror already holds, so each one is an update.
            unfinished = sorted((x for x in c.sim.calls() if x["call_status"] == "in-progress"
                                 and x["id"] not in fresh),
                                key=lambda x: h.parse_instant(x["call_started_at"]))
            ids = [x["id"] for x in unfinished[:2]]
            rest = [x["id"] for x in unfinished[2:]]
            ids += rng.sample(rest, min(3, len(rest)))
            changed = c.sim.finish(ids=ids)
            oldest = h.parse_instant(unfinished[0]["call_started_at"])
            h.log("round %d: %d late, %d new, %d finished (oldest started %s before the newest)"
                  % (rnd, len(late), len(new), len(changed), newest - oldest))
            if rnd == 0:
                check((newest - oldest).days >= 1, "test data: the oldest unfinished call is "
                      "not days old (%s)" % (newest - oldest))

            r = c.run("once")
            c.expect_rc(r, 0, "round %d" % rnd)
            c.assert_exact("after round %d" % rnd)
            run = c.sync_runs()[-1]
            check(run["mode"] == "incremental" and run["outcome"] == "ok",
                  "round %d: sync_runs %s" % (rnd, run))
            check((run["inserted"], run["updated"]) == (len(late) + len(new), len(changed)),
                  "round %d: inserted/updated = %s/%s, expected %d/%d" % (
                      rnd, run["inserted"], run["updated"], len(late) + len(new), len(changed)))

        before = c.row_versions()
        r = c.run("once")
        c.expect_rc(r, 0, "pass over unchanged data")
        after = c.row_versions()
        changed = [k for k in before if before[k] != after.get(k)]
        check(not changed, "a once over unchanged data rewrote %d rows, e.g. %s"
              % (len(changed), changed[:5]))
        run = c.sync_runs()[-1]
        check((run["inserted"], run["updated"], run["outcome"]) == (0, 0, "ok"),
              "unchanged pass: sync_runs %s" % run)


def from_empty(order):
    """The API starts empty, then lists one call, then a few more: with too little data
    to see the order, every pass must still be exact."""
    with h.Case("once_empty", order=order, seed=32, calls=0, page_size=10) as c:
        c.expect_rc(c.run("once"), 0, "once on an empty API")
        c.assert_exact("after once on an empty API")
        for n in (1, 1, 25):
            c.sim.add(count=n, in_progress=0.5)
            c.expect_rc(c.run("once"), 0, "once after %d more" % n)
            c.assert_exact("after %d more call(s)" % n)
        c.sim.finish(count=100)
        c.sim.add(late=3, within_seconds=1800)
        c.expect_rc(c.run("once"), 0)
        c.assert_exact("after finishing every call and 3 late arrivals")


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "once") + h.both_orders(from_empty, "once from empty"))
