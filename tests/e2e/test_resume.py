#!/usr/bin/env python3
"""An interrupted backfill resumes: a slow backfill (the simulator delays each page)
is killed with SIGKILL after a few pages have committed; what it committed is an
exact prefix of the list; the next backfill does not start again at offset 0: it reads
what was left first, then the part its predecessor read (it trusts nothing a killed
command read: calls there may have been edited or deleted since), one reading of the
list in all, writes only the calls it had not mirrored, and leaves the mirror exact."""

import signal

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

N, PAGE = 600, 10


def scenario(order):
    with h.Case("resume", order=order, seed=61, calls=N, page_size=PAGE) as c:
        c.sim.config(delay_ms=80)
        p = c.spawn("backfill")
        c.wait_for("5 pages committed",
                   lambda: p.poll() is not None or c.count_calls() >= 5 * PAGE, timeout=60)
        check(p.poll() is None, "backfill exited (%s) before it could be interrupted; "
              "committed rows: %d (pages are not committed one by one?)"
              % (p.returncode, c.count_calls()))
        p.send_signal(signal.SIGKILL)
        r = c.wait(p, 10)
        committed = c.count_calls()
        h.log("killed backfill: %d rows committed" % committed)
        check(PAGE <= committed < N, "committed %d rows" % committed)

        # What was committed is exactly the first rows of the list, each exact.
        calls = c.sim.calls()
        head = {x["id"] for x in calls[:committed]}
        rows = c.mirror_rows()
        check({x["id"] for x in rows} == head, "the committed rows are not the first %d of the "
              "list in API order" % committed)
        d = h.mirror_diff([x for x in calls if x["id"] in head], rows, c.source)
        check(not d, "committed rows differ:\n  " + "\n  ".join(d))

        last_seq = max([x["seq"] for x in c.sim.requests()] or [0])
        c.sim.config(delay_ms=0)
        r = c.run("backfill")
        c.expect_rc(r, 0, "resumed backfill")
        c.assert_exact("after the resumed backfill")
        reqs = h.api_log_since(c.sim.requests(), last_seq)
        check(reqs, "the resumed backfill made no request")
        first = reqs[0]
        fetched = sum(x["returned"] or 0 for x in reqs)
        h.log("resumed backfill: %d requests, first offset %s limit %s, %d records fetched "
              "(%d were left)" % (len(reqs), first["offset"], first["limit"], fetched,
                                  N - committed))
        check(first["offset"] != 0 or first["limit"] <= 1,
              "the resumed backfill started again at offset 0 (limit %s)" % first["limit"])
        # Pages overlap by one call (the daemon checks each page joins the last one),
        # so each request re-reads one call it has already seen; the list is read once.
        check(N <= fetched <= N + len(reqs) + 3 * PAGE,
              "the resumed backfill fetched %d records in %d requests; one reading of the "
              "%d calls expected" % (fetched, len(reqs), N))
        wrap = [i for i, x in enumerate(reqs) if x["offset"] == 0]
        check(wrap and all(x["offset"] >= first["offset"] for x in reqs[:wrap[0]]),
              "the resumed backfill did not read to the end first, then from offset 0: %s"
              % [x["offset"] for x in reqs])
        runs = c.sync_runs()
        check(int(runs[-1]["inserted"]) == N - committed and int(runs[-1]["updated"]) == 0,
              "the resumed backfill wrote %s new and %s changed rows; %d were left, none "
              "changed" % (runs[-1]["inserted"], runs[-1]["updated"], N - committed))
        check(runs and runs[-1]["mode"] == "backfill" and runs[-1]["outcome"] == "ok",
              "last sync_runs row: %s" % (runs[-1:],))
        h.log("sync_runs outcomes: %s" % [(x["mode"], x["outcome"]) for x in runs])


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "resume"))
