#!/usr/bin/env python3
"""Reconciliation (issue 3, guarantee 6), seeded, in both orders.

deletions: calls deleted in the simulator (old ones and some of the last hour), then
  `backfill`: those calls have deleted_at set, their rows kept with their content
  unchanged (raw, typed columns, updated_at), every other call has deleted_at NULL, and
  sync_runs.marked_deleted equals the number deleted. Deleted calls come back (the same
  records re-added): a `once` clears deleted_at of those inside its window, the next
  `backfill` of all of them, marking nothing. More deletions, then a backfill killed with
  SIGKILL mid-way marks nothing, a resumed one that fails (HTTP 400 from the API) marks
  nothing, the one that completes marks exactly those. Edits of old finished calls
  (invisible to `once`, not required of it) are caught by `backfill`.
periodic: `run` with full_resync_interval 2s and poll_interval 1s makes a backfill-mode
  pass again after the interval, which marks a call deleted meanwhile and catches an
  edit of an old call; with full_resync_interval 0 no pass after the first is a
  backfill (and the deletion stays unmarked).

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import random
import signal
import time

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

N, PAGE = 600, 25
CONTENT = ("raw", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
           "call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
           "call_intent", "updated_at", "first_seen_at", "source")


def rows_by_id(c):
    return {r["id"]: r for r in c.mirror_rows()}


def deleted_set(c):
    return {r["id"] for r in c.mirror_rows() if r["deleted_at"] is not None}


def check_marked(c, before, gone, what):
    """gone: ids the API no longer lists; before: rows before the backfill."""
    rows = rows_by_id(c)
    calls = c.sim.calls()
    listed = {x["id"] for x in calls}
    check(set(rows) >= set(gone), "%s: rows of deleted calls were removed: %s"
          % (what, sorted(set(gone) - set(rows))[:5]))
    unmarked = [i for i in gone if rows[i]["deleted_at"] is None]
    check(not unmarked, "%s: %d deleted calls without deleted_at, e.g. %s"
          % (what, len(unmarked), unmarked[:3]))
    wrong = [i for i in listed if rows.get(i, {}).get("deleted_at") is not None]
    check(not wrong, "%s: %d listed calls with deleted_at set, e.g. %s"
          % (what, len(wrong), wrong[:3]))
    for i in gone:
        for col in CONTENT:
            if col == "raw":
                d = h.json_diff(before[i]["raw"], rows[i]["raw"])
                check(d is None, "%s: %s: marking it deleted changed raw: %s" % (what, i, d))
            else:
                check(before[i][col] == rows[i][col], "%s: %s: marking it deleted changed %s "
                      "from %s to %s" % (what, i, col, before[i][col], rows[i][col]))
    d = h.mirror_diff(calls, list(rows.values()), c.source)
    check(not d, "%s: mirror differs:\n  %s" % (what, "\n  ".join(d)))


def deletions(order, seed):
    rng = random.Random(seed)
    with h.Case("reconcile", order=order, seed=seed, calls=0, page_size=PAGE) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=N, in_progress_recent=40, in_progress_stuck=3)
        c.expect_rc(c.run("backfill"), 0, "first backfill")
        check(c.last_run()["marked_deleted"] == 0, "the first backfill marked calls deleted")

        # 1. deletions: 15 old calls anywhere, up to 4 of the last hour
        calls = c.sim.calls()
        by_age = sorted(calls, key=h.started_us)
        newest = h.started_us(by_age[-1])
        last_hour = [x["id"] for x in by_age if newest - h.started_us(x) < 3600 * 10**6]
        old = rng.sample([x["id"] for x in by_age[:-len(last_hour) - 5]], 15)
        new = rng.sample(last_hour, min(4, len(last_hour)))
        gone = old + new
        deleted = {x["id"]: x for x in c.sim.delete(ids=gone)}
        before = rows_by_id(c)
        time.sleep(0.01)
        c.expect_rc(c.run("backfill"), 0, "backfill after %d deletions" % len(gone))
        check_marked(c, before, gone, "after the backfill")
        run = c.last_run()
        check(run["marked_deleted"] == len(gone), "sync_runs.marked_deleted = %s, %d calls "
              "were deleted" % (run["marked_deleted"], len(gone)))
        h.log("%d deleted calls marked, rows kept, content unchanged" % len(gone))

        # 2. they come back: the same records
        c.sim.add(records=[deleted[i] for i in gone])
        c.expect_rc(c.run("once"), 0, "once after the calls came back")
        still = deleted_set(c)
        check(not (set(new) & still), "once saw the recent calls that came back (they are in "
              "its window) but left deleted_at set on %s" % sorted(set(new) & still))
        h.log("once cleared deleted_at of %d returned calls in its window; %d old ones wait "
              "for a backfill" % (len(gone) - len(still), len(still)))
        c.expect_rc(c.run("backfill"), 0, "backfill after the calls came back")
        c.assert_exact("after they came back")
        check(not deleted_set(c), "rows still marked deleted: %s" % sorted(deleted_set(c))[:5])
        check(c.last_run()["marked_deleted"] == 0, "marked_deleted = %s, nothing is gone"
              % c.last_run()["marked_deleted"])

        # 3. an interrupted backfill marks nothing, a failed one neither
        gone2 = rng.sample([x["id"] for x in c.sim.calls()], 12)
        c.sim.delete(ids=gone2)
        before = rows_by_id(c)
        c.sim.config(delay_ms=40)
        p = c.spawn("backfill")
        c.wait_for("the backfill to commit pages",
                   lambda: p.poll() is not None or
                   ((c.sync_state() or {}).get("backfill_offset") or 0) >= 5 * PAGE, timeout=30)
        check(p.poll() is None, "the backfill ended (%s) before it could be killed"
              % p.returncode)
        p.send_signal(signal.SIGKILL)
        c.wait(p, 10)
        check(not deleted_set(c), "a killed backfill marked calls deleted: %s"
              % sorted(deleted_set(c))[:5])
        b = c.sync_state()["backfill_offset"]
        c.sim.config(delay_ms=0)
        c.sim.faults(queue=["400"])
        r = c.run("backfill")
        check(r.rc != 0, "the backfill the API refused (400) exited 0")
        check(not deleted_set(c), "a failed backfill marked calls deleted: %s"
              % sorted(deleted_set(c))[:5])
        h.log("killed backfill at offset %s and a failed one (exit %s) marked nothing"
              % (b, r.rc))
        c.sim.faults(clear=True)
        c.expect_rc(c.run("backfill"), 0, "resumed backfill")
        check_marked(c, before, gone2, "after the resumed backfill")
        check(c.last_run()["marked_deleted"] == len(gone2), "marked_deleted = %s, expected %d"
              % (c.last_run()["marked_deleted"], len(gone2)))

        # 4. edits of old finished calls: backfill catches them
        calls = c.sim.calls()
        by_age = sorted((x for x in calls if x["call_status"] != "in-progress"),
                        key=h.started_us)
        edit = rng.sample([x["id"] for x in by_age[:len(by_age) // 2]], 6)
        c.sim.update(ids=edit[:3], set={"lead_qualification": "hot",
                                        "qa_note": "reviewed · ✓ %d" % seed})
        c.sim.update(ids=edit[3:], set={"appointment_booked": True}, unset=["call_intent"])
        c.expect_rc(c.run("once"), 0, "once after old edits")
        stale = {x.split(":")[0] for x in c.diff()}
        h.log("once after edits of 6 old calls: %d still differ (not required of once)"
              % len(stale))
        check(stale <= set(edit), "once left differences other than the old edits: %s"
              % sorted(stale - set(edit)))
        c.expect_rc(c.run("backfill"), 0, "backfill after old edits")
        c.assert_exact("after a backfill caught the old edits")
        check(c.last_run()["updated"] == len(stale), "backfill updated %s rows, %d were stale"
              % (c.last_run()["updated"], len(stale)))
        h.log("deletions[%s]: %.1fs" % (order, time.monotonic() - t0))


def periodic(order, seed):
    rng = random.Random(seed)
    with h.Case("reconcile_run", order=order, seed=seed, calls=0, page_size=50,
                env={"VOZAGENT_POLL_INTERVAL": "1s", "VOZAGENT_FULL_RESYNC_INTERVAL": "2s"}) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=300)
        p = c.spawn("run")
        c.wait_exact("after run's first pass", timeout=30, proc=p)
        calls = c.sim.calls()
        victim = rng.choice(calls[50:250])["id"]
        old = sorted((x for x in calls if x["call_status"] != "in-progress"),
                     key=h.started_us)[:100]
        edited = rng.choice(old)["id"]
        c.sim.delete(ids=[victim])
        c.sim.update(ids=[edited], set={"qa_note": "edited after the fact"})
        c.wait_for("the deletion marked and the old edit mirrored",
                   lambda: p.poll() is not None or (victim in deleted_set(c) and not c.diff()),
                   timeout=20, interval=0.3)
        check(p.poll() is None, "run exited (%s)" % p.returncode)
        h.terminate(p)
        r = c.wait(p, 15)
        c.expect_rc(r, 0, "run stopped by SIGTERM")
        runs = [x for x in c.sync_runs() if x["outcome"] == "ok"]
        modes = [x["mode"] for x in runs]
        h.log("run with full_resync_interval 2s: passes %s" % modes)
        check(modes[0] == "backfill", "run's first pass on a fresh source: %s" % modes[0])
        full = [x for x in runs if x["mode"] == "backfill"]
        check(len(full) >= 2, "%d backfill-mode passes in %s; full_resync_interval 2s, poll 1s"
              % (len(full), modes))
        check("incremental" in modes, "no incremental pass between the full ones: %s" % modes)
        starts = [h.parse_instant(x["started_at"]) for x in full]
        gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
        check(all(1.9 <= g <= h.scaled(8) for g in gaps), "backfill passes %s s apart; "
              "full_resync_interval 2s, poll_interval 1s" % gaps)

        # full_resync_interval 0: never again after the first pass
        victim2 = rng.choice(c.sim.calls()[50:250])["id"]
        c.sim.delete(ids=[victim2])
        nruns = len(c.sync_runs())
        p = c.spawn("run", env={"VOZAGENT_FULL_RESYNC_INTERVAL": "0"})
        c.wait_for("4 passes", lambda: p.poll() is not None or len(c.sync_runs()) >= nruns + 4,
                   timeout=20, interval=0.2)
        c.wait_for("the 4th pass to finish", lambda: p.poll() is not None or
                   c.sync_runs()[-1]["outcome"] != "running", timeout=20, interval=0.1)
        h.terminate(p)
        c.expect_rc(c.wait(p, 15), 0, "run (interval 0) stopped by SIGTERM")
        modes0 = [x["mode"] for x in c.sync_runs()[nruns:]]
        h.log("run with full_resync_interval 0: passes %s" % modes0)
        check(len(modes0) >= 4 and all(m == "incremental" for m in modes0[1:]),
              "full_resync_interval 0: passes after the first %s" % modes0[1:])
        check(victim2 not in deleted_set(c), "full_resync_interval 0, yet a full pass marked "
              "%s deleted" % victim2)
        h.log("periodic[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(deletions, "deletions and backfill", 3401) +
           h.property_orders(periodic, "periodic full resync", 3402))
