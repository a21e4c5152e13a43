#!/usr/bin/env python3
"""The API changes while a pass pages through it (issue 3, guarantees 1 and 4), seeded, in
both orders. The simulator's mutator applies changes between pages: right after a
request's answer is decided, so that page does not show them and every later one does.

during_backfill: the mutator changes the data after every request of a `backfill` (new
  calls, late calls, finished calls, deletions anywhere and, more often, within a page of
  the pass's position, behind it and ahead of it); then it stops and one `once` runs:
  every call the API lists is in the mirror exactly, and the only extra live rows are
  calls the mutator deleted (only a complete backfill marks deletions; the one that ran
  while the deletions happened had already seen them). A final quiet `backfill` marks
  exactly those. The mutator log must show deletions that shifted the list under the
  pass, and sync_runs.drift_rereads > 0 (the drift detection ran).
during_once: the same with mutations during three `once` passes, then a quiet `once`.
naive_drift: deterministic: a queue of deletions right at the pass's page (two after
  every request, delete_window 1: more than the one call by which the daemon's pages
  overlap). A naive offset pager (offset += limit, no overlap) run against the same
  data and mutator misses calls, and no more than the mutator log says shifted the list
  under it; the daemon's `backfill` under the same mutator, whose log shows list shifts
  under its pages too, misses none: after it alone, every call the API lists is
  mirrored exactly, with drift_rereads > 0.
page_size_one: page_size 1 cannot overlap pages (docs/sync.md: no drift detection at
  that size), but a backfill and a once over a quiet API of 60 calls still complete
  (within 15 s) and are exact.

The mutator deletes calls by the hundred (up to ~15% of the list) and the final backfill
must mark them: these tests are about drift, not the mass-deletion guard, so they set
max_delete_fraction to 100%.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import json
import time
import urllib.request

import harness as h
from harness import check

KINDS = {"new": 2, "late": 2, "finish": 2, "delete": 3}
NO_DELETE_GUARD = {"VOZAGENT_MAX_DELETE_FRACTION": "100%"}
SHIFTING = ("behind", "in_page")   # a deletion there moves the rest of the list back


def deleted_ids(report):
    return {m["id"] for m in report["mutations"] if m["kind"] == "delete" and m["id"]}


def summary(report):
    rel = {}
    for m in report["mutations"]:
        if m["kind"] == "delete":
            rel[m["rel"]] = rel.get(m["rel"], 0) + 1
    return "%d mutations %s, deletions by position: %s" % (
        report["total"], report["counts"], rel)


def shifting_deletions(report, seqs):
    """Deletions that moved the list back under one of the requests `seqs`."""
    return [m for m in report["mutations"]
            if m["kind"] == "delete" and m["rel"] in SHIFTING and m["seq"] in seqs]


def finish_with_backfill(c, deleted):
    """A quiet backfill marks exactly the calls deleted after the mirror had them."""
    live_extra = c.assert_exact_but_deleted("before the quiet backfill", deleted)
    c.expect_rc(c.run("backfill"), 0, "quiet backfill")
    c.assert_exact("after the quiet backfill")
    run = c.last_run()
    check(run["marked_deleted"] == len(live_extra),
          "the quiet backfill marked %s calls deleted, expected %d"
          % (run["marked_deleted"], len(live_extra)))


def during_backfill(order, seed):
    n, page = 1500, 25
    with h.Case("live_backfill", order=order, seed=seed, calls=0, page_size=page,
                env=NO_DELETE_GUARD) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=n, in_progress_recent=80, in_progress_stuck=5)
        seq0 = c.sim.last_seq()
        c.sim.mutator(seed=seed, every=1, per=2, kinds=KINDS, late_within_seconds=1800,
                      delete_window=page, delete_near=0.7)
        r = c.run("backfill")
        rep = c.sim.mutator(off=True)
        c.expect_rc(r, 0, "backfill under mutation")
        run = c.last_run()
        seqs = {x["seq"] for x in h.api_log_since(c.sim.requests(), seq0)}
        shifts = shifting_deletions(rep, seqs)
        h.log("backfill under mutation: %s; %s requests, %s drift re-reads"
              % (summary(rep), run["requests"], run["drift_rereads"]))
        for kind in KINDS:
            check(rep["counts"][kind] > 0, "test data: the mutator made no %r change: %s"
                  % (kind, rep["counts"]))
        rels = {m["rel"] for m in rep["mutations"] if m["kind"] == "delete"}
        check("ahead" in rels and rels & set(SHIFTING), "test data: deletions did not hit "
              "both sides of the position: %s" % rels)
        check(shifts and run["drift_rereads"] > 0,
              "%d deletions moved the list under the backfill, yet sync_runs.drift_rereads "
              "= %s" % (len(shifts), run["drift_rereads"]))
        deleted = deleted_ids(rep)

        r = c.run("once")
        c.expect_rc(r, 0, "quiet once after the backfill")
        c.assert_exact_but_deleted("after backfill under mutation + once", deleted)
        finish_with_backfill(c, deleted)
        h.log("during_backfill[%s]: %.1fs" % (order, time.monotonic() - t0))


def during_once(order, seed):
    n, page = 1500, 25
    with h.Case("live_once", order=order, seed=seed, calls=0, page_size=page,
                env=NO_DELETE_GUARD) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=n, in_progress_recent=80, in_progress_stuck=5)
        c.expect_rc(c.run("backfill"), 0, "backfill")
        deleted, drift, shifted = set(), 0, 0
        for i in range(3):
            # some changes between the passes too, so each pass has work to do
            c.sim.add(count=(10, 60, 5)[i])
            c.sim.add(late=4, within_seconds=1800)
            c.sim.finish(count=3)
            seq0 = c.sim.last_seq()
            c.sim.mutator(seed=seed * 10 + i, every=1, per=2, kinds=KINDS,
                          late_within_seconds=1800, delete_window=page, delete_near=0.7)
            r = c.run("once")
            rep = c.sim.mutator(off=True)
            c.expect_rc(r, 0, "once %d under mutation" % i)
            run = c.last_run()
            seqs = {x["seq"] for x in h.api_log_since(c.sim.requests(), seq0)}
            deleted |= deleted_ids(rep)
            drift += run["drift_rereads"]
            shifted += len(shifting_deletions(rep, seqs))
            h.log("once %d under mutation: %s; %s requests, %s drift re-reads"
                  % (i, summary(rep), run["requests"], run["drift_rereads"]))
        h.log("%d deletions moved a list under the passes; %d drift re-reads" % (shifted, drift))
        r = c.run("once")
        c.expect_rc(r, 0, "quiet once")
        c.assert_exact_but_deleted("after once passes under mutation + a quiet once", deleted)
        finish_with_backfill(c, deleted)
        h.log("during_once[%s]: %.1fs" % (order, time.monotonic() - t0))


def naive_pager(c, page):
    """Page through /v1/calls the naive way; returns (ids seen, seqs of its requests)."""
    seen, offset = [], 0
    seq0 = c.sim.last_seq()
    while True:
        req = urllib.request.Request("%s/calls?limit=%d&offset=%d" % (c.sim.api_url, page,
                                                                     offset),
                                     headers={"Authorization": "Bearer " + c.token})
        with urllib.request.urlopen(req, timeout=30) as r:
            got = json.loads(r.read().decode("utf-8"))
        seen += [x["id"] for x in got]
        if len(got) < page:
            break
        offset += page
    return seen, {x["seq"] for x in h.api_log_since(c.sim.requests(), seq0)}


def naive_drift(order, seed):
    n, page = 400, 20
    # two deletions at the page after every request: more than the one call by which the
    # daemon's pages overlap, so the overlap alone would not save it either
    mut = dict(seed=seed, every=1, per=2, kinds={"delete": 1}, delete_window=1, max=30)
    with h.Case("naive_drift", order=order, seed=seed, calls=0, page_size=page) as c:
        t0 = time.monotonic()
        # 1. a naive pager under the mutator
        c.sim.reset(seed=seed, calls=n)
        initial = [x["id"] for x in c.sim.calls()]
        c.sim.mutator(**mut)
        seen, seqs = naive_pager(c, page)
        rep = c.sim.mutator(off=True)
        gone = deleted_ids(rep)
        missed = [x for x in initial if x not in gone and x not in set(seen)]
        shifts = shifting_deletions(rep, seqs)
        h.log("naive pager: %d requests, %d deletions (%d moved the list back under it), "
              "%d calls never deleted yet never seen" % (len(seqs), len(gone), len(shifts),
                                                        len(missed)))
        check(missed, "the naive pager missed nothing: the scenario does not exercise drift "
              "(%s)" % summary(rep))
        check(len(missed) <= len(shifts), "the naive pager missed %d calls, more than the %d "
              "deletions that shifted the list under it" % (len(missed), len(shifts)))

        # 2. the daemon, same data, same mutator
        c.sim.reset(seed=seed, calls=n)
        check([x["id"] for x in c.sim.calls()] == initial, "reset did not regenerate the data")
        seq0 = c.sim.last_seq()
        c.sim.mutator(**mut)
        r = c.run("backfill")
        rep = c.sim.mutator(off=True)
        c.expect_rc(r, 0, "backfill under deletions at its position")
        run = c.last_run()
        seqs = {x["seq"] for x in h.api_log_since(c.sim.requests(), seq0)}
        shifts = shifting_deletions(rep, seqs)
        gone = deleted_ids(rep)
        h.log("daemon: %s requests, %d deletions (%d moved the list back under a page, so "
              "a naive pager there would have skipped a call each), %s drift re-reads"
              % (run["requests"], len(gone), len(shifts), run["drift_rereads"]))
        check(shifts, "test data: no deletion moved the list under the daemon's pages")
        ids = {x["id"] for x in c.mirror_rows()}
        lost = [x for x in initial if x not in gone and x not in ids]
        check(not lost, "the backfill missed %d calls never deleted (a naive pager missed "
              "%d): %s" % (len(lost), len(missed), lost[:5]))
        check(run["drift_rereads"] > 0, "the list moved back under the backfill %d times, "
              "yet sync_runs.drift_rereads = 0" % len(shifts))
        # right after the backfill alone (only deletions happened): exact
        c.assert_exact_but_deleted("after the backfill under deletions", gone)
        h.log("naive_drift[%s]: %.1fs" % (order, time.monotonic() - t0))


def page_size_one(order, seed):
    """docs/sync.md: with page_size 1 pages cannot overlap, so drift is not detected at
    that size; passes must still complete and be exact over a quiet API."""
    with h.Case("page_size_one", order=order, seed=seed, calls=0, page_size=1) as c:
        c.sim.reset(seed=seed, calls=60)
        c.expect_rc(c.run("backfill", timeout=15), 0, "backfill with page_size 1")
        c.assert_exact("after a backfill with page_size 1")
        c.sim.add(count=3)
        c.sim.add(late=2, within_seconds=1800)
        c.sim.finish(count=2)
        c.expect_rc(c.run("once", timeout=15), 0, "once with page_size 1")
        c.assert_exact("after a once with page_size 1")
        reqs = h.api_log_since(c.sim.requests())
        h.log("page_size 1: %d requests in all" % len(reqs))


if __name__ == "__main__":
    h.main(h.property_orders(during_backfill, "mutation during backfill", 3201) +
           h.property_orders(during_once, "mutation during once", 3202) +
           h.property_orders(naive_drift, "deletions at the position, naive pager", 3203) +
           h.property_orders(page_size_one, "page_size 1", 3204))
