#!/usr/bin/env python3
"""kill -9 at random moments never loses a call nor leaves the cursor ahead of the rows
(issue 3, guarantee 5), seeded, in both orders.

kill_backfill: a slow `backfill` (the simulator delays each page) is killed with SIGKILL
  after a random delay (the first one early, while it connects and migrates), 8 times;
  after every kill the database is consistent: sync_state.backfill_offset B (when set) is
  covered by the committed rows - every call at list positions below B is mirrored, and
  no call past the last committed page is (the rows are exactly the first B+1 calls of
  the list, each exact); B never moves back; `status` shows the backfill as interrupted
  at B. Each command starts where the last one stopped and reads to the end, then from
  offset 0 again (backfill_wrap_to set): from then on every call is mirrored, and B
  counts from 0 again. A final `backfill` completes: exact, no duplicate rows,
  backfill_offset NULL, the inserted counts over all attempts add up to the number of
  calls, every killed run is marked interrupted, and the records fetched over all
  attempts stay close to two readings of the list (the attempts resumed, so together
  they read it about once; the final one reads all of it again, since it trusts nothing
  a killed command read) - not attempts x list.
kill_once: changes, then a slow `once` killed at a random moment, 4 times (the mirror
  holds only calls the API lists); a last `once` makes the mirror exact and leaves no
  pass marked running.
late_behind_resumed_backfill: deterministic. A first backfill is killed in the busy last
  hour of the list (calls 2 minutes apart); while it is stopped a call arrives late, 10
  minutes before the newest call already mirrored (well within the 2h lookback), so it
  lands behind the position the backfill resumes at; then 40 new calls arrive, 10
  minutes apart (hours: more than the lookback). The resumed backfill completes; then
  one `once` must bring the late call in (guarantee 1: late arrivals up to lookback
  before the newest call already mirrored), so the window must be based on the newest
  call mirrored when the resumed pass started, not the newest it found.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import datetime as dt
import random
import re
import signal
import time

import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

KILLS = 8


def committed_prefix_ok(c, calls, what):
    """After a kill: the rows are exactly the calls of the committed pages, each exact,
    and the cursor is not ahead of them. Returns backfill_offset (None: not set)."""
    st = c.sync_state()
    rows = c.mirror_rows() if c.has_table("vozagent.calls") else []
    ids = [r["id"] for r in rows]
    check(len(ids) == len(set(ids)), "%s: duplicate ids in vozagent.calls" % what)
    pos = {x["id"]: i for i, x in enumerate(calls)}
    b = st["backfill_offset"] if st else None
    if st and st.get("backfill_wrap_to") is not None:
        # reading from the start again: the whole list was committed before
        check(set(ids) == set(pos), "%s: re-reading from the start (wrap_to %s), yet %d of "
              "%d calls are mirrored" % (what, st["backfill_wrap_to"], len(ids), len(calls)))
    elif b is None:
        # nothing committed yet, or the backfill completed
        check(not ids or len(ids) == len(calls), "%s: no backfill_offset, yet %d of %d calls "
              "are mirrored" % (what, len(ids), len(calls)))
    else:
        b = int(b)
        missing = [x["id"] for x in calls[:b] if x["id"] not in set(ids)]
        check(not missing, "%s: backfill_offset %d is ahead of the rows: %d calls below it "
              "are not mirrored, e.g. %s (positions %s)" % (
                  what, b, len(missing), missing[:3], [pos[m] for m in missing[:3]]))
        ahead = sorted(pos.get(i, -1) for i in ids if pos.get(i, -1) > b)
        check(not ahead, "%s: rows past the cursor (backfill_offset %d): positions %s"
              % (what, b, ahead[:5]))
    d = h.mirror_diff([x for x in calls if x["id"] in set(ids)], rows, c.source)
    check(not d, "%s: committed rows differ:\n  %s" % (what, "\n  ".join(d)))
    return b


def kill_backfill(order, seed):
    rng = random.Random(seed)
    n, page = 2000, 20
    with h.Case("kill_backfill", order=order, seed=seed, calls=0, page_size=page) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=n, in_progress_recent=60, in_progress_stuck=4)
        calls = c.sim.calls()
        c.sim.config(delay_ms=60)
        last_b, attempts, done_early = None, 0, False
        for i in range(KILLS):
            delay = rng.uniform(0.0, 0.06) if i == 0 else rng.uniform(0.1, 0.9)
            p = c.spawn("backfill")
            time.sleep(delay)
            killed = p.poll() is None
            if killed:
                p.send_signal(signal.SIGKILL)
            r = c.wait(p, 10)
            attempts += 1
            b = committed_prefix_ok(c, calls, "after kill %d (%.2fs)" % (i, delay))
            h.log("attempt %d: killed after %.2fs -> backfill_offset %s, %d rows"
                  % (i, delay, b, c.count_calls()))
            if not killed:
                check(r.rc == 0, "backfill exited %s before the kill" % r.rc)
                done_early = True
                h.log("the backfill completed before kill %d" % i)
                break
            st = c.sync_state()
            wrapped = st is not None and st["backfill_wrap_to"] is not None
            if b is not None:
                check(wrapped or last_b is None or b >= last_b, "backfill_offset moved back "
                      "from %s to %s (the resumed backfill started over?)" % (last_b, b))
                last_b = None if wrapped else b
                st = c.run("status")
                c.expect_rc(st, 0, "status")
                check(re.search(r"interrupted at offset %d\b" % b, st.out),
                      "status does not show the backfill interrupted at offset %d:\n%s"
                      % (b, st.out))
        check((c.sync_state() or {}).get("backfill_offset") is not None or done_early,
              "test data: no kill left a backfill_offset")
        c.sim.config(delay_ms=0)
        r = c.run("backfill")
        c.expect_rc(r, 0, "final backfill")
        attempts += 1
        c.assert_exact("after %d killed backfills and a final one" % (attempts - 1))
        check(c.scalar("select count(*) = count(distinct id) from vozagent.calls") == "t",
              "duplicate rows")
        st = c.sync_state()
        check(st["backfill_offset"] is None, "backfill_offset = %s after a complete backfill"
              % st["backfill_offset"])
        runs = c.sync_runs()
        ins = sum(int(x["inserted"]) for x in runs)
        check(ins == n, "inserted over all attempts = %d, expected %d (each call once)"
              % (ins, n))
        check(runs[-1]["outcome"] == "ok", "final run: %s" % runs[-1])
        bad = [(x["id"], x["outcome"]) for x in runs[:-1] if x["outcome"] != "interrupted"]
        check(not bad, "killed runs not marked interrupted: %s" % bad)
        reqs = h.api_log_since(c.sim.requests())
        fetched = sum(x["returned"] or 0 for x in reqs)
        # the final command reads the whole list itself once more
        bound = 2 * n + 2 * h.scan_pages(n, page) + attempts * 2 * page
        h.log("kill_backfill[%s]: %d attempts fetched %d records in %d requests (the list "
              "has %d; %d attempts x list = %d; bound %d); %.1fs"
              % (order, attempts, fetched, len(reqs), n, attempts, attempts * n, bound,
                 time.monotonic() - t0))
        check(fetched <= bound, "the attempts fetched %d records, more than two readings of "
              "the %d calls plus a page or two per attempt (%d): attempts started over"
              % (fetched, n, bound))
        check(fetched * 2 < attempts * n, "the attempts fetched %d records, not well below "
              "%d attempts x %d calls" % (fetched, attempts, n))


def kill_once(order, seed):
    rng = random.Random(seed)
    n, page = 800, 20
    with h.Case("kill_once", order=order, seed=seed, calls=0, page_size=page) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=n, in_progress_recent=60, in_progress_stuck=4)
        c.expect_rc(c.run("backfill"), 0, "backfill")
        nkilled = 0
        for i in range(4):
            c.sim.add(count=rng.randint(5, 60))
            c.sim.add(late=rng.randint(0, 4), within_seconds=1800)
            c.sim.finish(count=rng.randint(0, 4))
            c.sim.config(delay_ms=100)
            delay = rng.uniform(0.02, 0.5)
            p = c.spawn("once")
            time.sleep(delay)
            killed = p.poll() is None
            if killed:
                p.send_signal(signal.SIGKILL)
            c.wait(p, 10)
            nkilled += killed
            calls = c.sim.calls()
            rows = c.mirror_rows()
            listed = {x["id"] for x in calls}
            check(all(r["id"] in listed for r in rows), "rows the API does not list")
            ids = {r["id"] for r in rows}
            d = h.mirror_diff([x for x in calls if x["id"] in ids], rows, c.source, limit=10**6)
            h.log("once killed after %.2fs: %d of %d listed calls mirrored, %d rows not yet "
                  "refreshed" % (delay, len(ids), len(listed), len({x.split(":")[0]
                                                                    for x in d})))
            c.sim.config(delay_ms=0)
        check(nkilled >= 2, "test data: only %d of 4 passes were killed mid-pass" % nkilled)
        r = c.run("once")
        c.expect_rc(r, 0, "final once")
        c.assert_exact("after killed once passes and a final once")
        runs = c.sync_runs()
        check(not [x for x in runs if x["outcome"] == "running"],
              "runs left 'running': %s" % [x["id"] for x in runs if x["outcome"] == "running"])
        h.log("kill_once[%s]: %.1fs" % (order, time.monotonic() - t0))


def fmt_us(us):
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_calls(template, tag, n, first_us, gap_s):
    """n finished calls copied from template, every gap_s seconds from first_us: a part of
    the list whose spacing the test controls (the generator's gaps include quiet nights)."""
    out = []
    for i in range(n):
        t = first_us + i * gap_s * 10**6
        r = dict(template)
        r.update(id="call-%s%04x-0000-4000-%04x" % (tag, i, i), call_status="completed",
                 call_started_at=fmt_us(t), call_ended_at=fmt_us(t + 90 * 10**6),
                 duration_seconds=90)
        out.append(r)
    return out


def late_behind_resumed_backfill(order, seed):
    page, lookback_min = 8, 120
    with h.Case("late_resume", order=order, seed=seed, calls=0, page_size=page,
                env={"VOZAGENT_LOOKBACK": "%dm" % lookback_min}) as c:
        t0 = time.monotonic()
        c.sim.reset(seed=seed, calls=100)
        template = c.sim.calls()[0]
        first = max(h.started_us(x) for x in c.sim.calls()) + 120 * 10**6
        c.sim.add(records=synthetic_calls(template, "b057", 30, first, 120))  # a busy hour
        calls = c.sim.calls()
        newest = max(h.started_us(x) for x in calls)
        # stop the backfill once it has mirrored calls of the busy hour, pages before the end
        recent = [i for i, x in enumerate(calls) if h.started_us(x) >= first]
        target = min(recent) + page if order == "oldest_first" else 2 * page
        for attempt in range(3):
            c.q("drop schema if exists vozagent cascade")
            c.sim.config(delay_ms=150)
            p = c.spawn("backfill")

            def pos():
                st = c.sync_state() if c.has_table("vozagent.sync_state") else None
                return st["backfill_offset"] if st else None
            c.wait_for("the backfill past offset %d" % target,
                       lambda: p.poll() is not None or (pos() or 0) >= target, timeout=60)
            p.send_signal(signal.SIGKILL)
            c.wait(p, 10)
            b = pos()
            if b is not None:
                break
            h.log("the backfill completed before the kill; again")
        check(b is not None, "test data: could not interrupt the backfill near its end")
        rows = c.mirror_rows()
        mirrored = sorted(h.started_us(r) for r in rows)
        mirrored_newest = mirrored[-1]
        # 10 minutes before the newest call mirrored, and before the one mirrored before
        # it too: strictly behind the position the backfill resumes at
        start = min(mirrored_newest - 600 * 10**6, mirrored[-2] - 60 * 10**6)
        late = synthetic_calls(template, "1a7e", 1, start, 0)[0]
        c.sim.add(records=[late])
        at = [x["id"] for x in c.sim.calls()].index(late["id"])
        h.log("backfill killed at offset %s (%d rows); late call started %s, %.0f min before "
              "the newest mirrored (%s), %.0f min before the API's newest; at offset %d"
              % (b, len(rows), late["call_started_at"], (mirrored_newest - start) / 60e6,
                 fmt_us(mirrored_newest), (newest - start) / 60e6, at))
        check(mirrored_newest - start < lookback_min * 60 * 10**6,
              "test data: the late call is not within the lookback of the newest mirrored")
        if order == "oldest_first":
            check(at < b, "test data: the late call is at offset %d, not behind the resume "
                  "offset %d" % (at, b))
        # then hours of new calls (more than the lookback), while the backfill is stopped
        added = c.sim.add(records=synthetic_calls(template, "4e55", 40, newest + 600 * 10**6,
                                                  600))
        h.log("then %d new calls, up to %s" % (len(added), added[-1]["call_started_at"]))
        c.sim.config(delay_ms=0)
        c.expect_rc(c.run("backfill"), 0, "resumed backfill")
        st = c.sync_state()
        at = [x["id"] for x in c.sim.calls()].index(late["id"])
        h.log("after the resumed backfill: api_order %s, window_base_at %s, window_offset %s; "
              "the late call is at offset %d" % (st["api_order"], st["window_base_at"],
                                                 st["window_offset"], at))
        r = c.run("once")
        c.expect_rc(r, 0, "once after the resumed backfill")
        h.log("once: %s" % " | ".join(r.err.strip().splitlines()))
        c.assert_exact("after the resumed backfill and a once")
        h.log("late_behind_resumed_backfill[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(kill_backfill, "kill -9 backfill", 3301) +
           h.property_orders(kill_once, "kill -9 once", 3302) +
           h.property_orders(late_behind_resumed_backfill,
                             "late call behind an interrupted backfill", 3303))
