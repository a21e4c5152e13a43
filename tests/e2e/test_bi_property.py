#!/usr/bin/env python3
"""The rollup and the change history (sql/007_bi.sql) under random changes, seeded, in
both orders, through the real binary and the simulator.

About 200 calls in the reporting time zone America/New_York, then several rounds of
random simulator changes: new calls, late calls, in-progress calls finished, fields
updated (lead_qualification, appointment_booked, call_type, assistant_id,
duration_seconds, a vendor key, call_started_at moved by about a day), fields removed,
a field changed and changed back before the pass, calls deleted, deleted calls coming
back. Each round ends with a pass of the binary, `once` and `backfill` alternating (a
backfill marks deletions). After every pass:

(a) the rollup, vozagent.calls_daily_rollup, equals the same aggregate computed here
    from vozagent.calls by a GROUP BY of this test's own (AT TIME ZONE, FILTER,
    percentile_cont, one count per local hour), row by row and column by column;
(b) the mirror holds what the simulator listed: after a backfill exactly, after a
    once each call as the simulator lists it now or as the mirror held it before the
    pass (a once does not reread old calls); and the history rows the pass wrote,
    vozagent.call_changes, are exactly the difference between the call as the mirror
    held it before the pass and after it: one 'insert' for a new call, one 'update'
    per top-level key whose value changed (old and new jsonb, NULL for an absent key),
    'delete' / 'undelete' when deleted_at was set / cleared, nothing for a call that
    did not change (a change made and undone between two passes is not seen); with the
    pass's run id and an observed_at within the pass. Replaying every history row from
    the first observation of each call rebuilds every call as the mirror holds it.

E2E_SEED=N replays a seed (E2E_SEED=random draws one), E2E_ORDER picks one order."""

import datetime as dt
import random
import time
from collections import Counter
from decimal import Decimal

import harness as h
from harness import check

N, ROUNDS, PAGE = 200, 6, 25
ZONE = "America/New_York"
ENV = {"VOZAGENT_MAX_DELETE_FRACTION": "100%"}
ABSENT = object()
# field updates, weighted by repetition
KINDS = ("lead", "lead", "booked", "type", "assistant", "start", "start", "start",
         "duration", "vendor", "unset")

# The aggregate of calls_daily_rollup, written from the spec (docs/bi.md) and not
# from 007's functions: a GROUP BY over the live calls in the reporting zone.
HOURS = ",\n       ".join(
    "count(*) FILTER (WHERE hr = %d)" % i for i in range(24))
HOURS_BOOKED = ",\n       ".join(
    "count(*) FILTER (WHERE hr = %d AND appointment_booked)" % i for i in range(24))
EXPECTED_ROLLUP = """
WITH c AS (
    SELECT (call_started_at AT TIME ZONE '%(zone)s')::date AS call_date,
           extract(hour FROM call_started_at AT TIME ZONE '%(zone)s')::int AS hr,
           assistant_id, call_type, call_status, appointment_booked,
           lead_qualification, duration_seconds
      FROM vozagent.calls
     WHERE source = '%(source)s' AND deleted_at IS NULL AND call_started_at IS NOT NULL)
SELECT call_date, assistant_id, call_type,
       count(*) AS calls,
       count(*) FILTER (WHERE call_status = 'completed') AS completed,
       count(*) FILTER (WHERE call_status = 'failed') AS failed,
       count(*) FILTER (WHERE call_status = 'in-progress') AS in_progress,
       count(*) FILTER (WHERE appointment_booked) AS booked,
       count(*) FILTER (WHERE lead_qualification = 'hot') AS hot,
       count(*) FILTER (WHERE lead_qualification = 'warm') AS warm,
       count(*) FILTER (WHERE lead_qualification = 'cold') AS cold,
       count(*) FILTER (WHERE call_status = 'completed'
                          AND lead_qualification IN ('hot', 'warm')) AS qualified_completed,
       count(*) FILTER (WHERE call_status = 'completed' AND appointment_booked
                          AND lead_qualification IN ('hot', 'warm'))
           AS booked_qualified_completed,
       sum(duration_seconds) AS duration_sum,
       count(duration_seconds) AS duration_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS duration_median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_seconds) AS duration_p90,
       ARRAY[%(hours)s] AS hour_calls,
       ARRAY[%(hours_booked)s] AS hour_booked
  FROM c GROUP BY call_date, assistant_id, call_type
"""
COLS = ("calls", "completed", "failed", "in_progress", "booked", "hot", "warm", "cold",
        "qualified_completed", "booked_qualified_completed", "duration_sum", "duration_n",
        "duration_median", "duration_p90", "hour_calls", "hour_booked")


def json_rows(c, sql):
    return c.qjson("SELECT coalesce(json_agg(x), '[]') FROM (%s) x" % sql)


def close(a, b):
    """Equal numbers; percentile_cont works in double precision, so the median and
    p90 may differ from an exact numeric in the 15th digit."""
    if a is None or b is None:
        return a is None and b is None
    a, b = Decimal(a), Decimal(b)
    return abs(a - b) <= Decimal("1e-9") * max(Decimal(1), abs(a), abs(b))


def check_rollup(c, when):
    exp = json_rows(c, EXPECTED_ROLLUP % {"zone": ZONE, "source": c.source,
                                          "hours": HOURS, "hours_booked": HOURS_BOOKED})
    got = json_rows(c, "SELECT * FROM vozagent.calls_daily_rollup WHERE source = '%s'"
                    % c.source)

    def key(r):
        return (r["call_date"], r["assistant_id"], r["call_type"])
    exp = {key(r): r for r in exp}
    gotk = {}
    for r in got:
        check(key(r) not in gotk, "%s: two rollup rows for %s" % (when, key(r)))
        gotk[key(r)] = r
    diffs = []
    for k in sorted(set(exp) | set(gotk), key=repr):
        e, g = exp.get(k), gotk.get(k)
        if g is None:
            diffs.append("%s: no rollup row; calls has %s calls" % (k, e["calls"]))
            continue
        if e is None:
            diffs.append("%s: a rollup row (%s calls) for a group without live calls"
                         % (k, g["calls"]))
            continue
        for col in COLS:
            if col not in g:
                diffs.append("rollup has no column %s" % col)
                continue
            ev, gv = e[col], g[col]
            if col == "duration_sum" and e["duration_n"] == 0:
                ok = gv in (None, 0)          # no duration: the spec allows NULL or 0
            elif col in ("duration_median", "duration_p90", "duration_sum"):
                ok = close(ev, gv)
            else:
                ok = ev == gv
            if not ok:
                diffs.append("%s: %s = %s, calls say %s" % (k, col, gv, ev))
    check(not diffs, "%s: calls_daily_rollup differs from the aggregate of calls "
          "(%d groups):\n  %s" % (when, len(exp), "\n  ".join(diffs[:30])))
    return len(exp)


# ---------------------------------------------------------------- history ----

def jkey(v):
    """A JSON value in one canonical text (None is JSON null here, not "absent")."""
    return h.dumps_exact(v)


def dbkey(text):
    """A jsonb column read as text: SQL NULL (an absent key) stays None."""
    return None if text is None else jkey(h.jload_exact(text))


def field_diff(old, new):
    """(field, old, new) of every top-level key whose value differs (None: absent)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, ABSENT), new.get(k, ABSENT)
        if a is ABSENT or b is ABSENT:
            if a is b:
                continue
        elif h.json_diff(a, b) is None:
            continue
        out.append((k, None if a is ABSENT else jkey(a), None if b is ABSENT else jkey(b)))
    return out


def mirror_state(c):
    """id -> (raw, deleted) as vozagent.calls holds it."""
    rows = json_rows(c, "SELECT id, raw, deleted_at IS NOT NULL AS deleted "
                        "FROM vozagent.calls WHERE source = '%s'" % c.source)
    return {r["id"]: (r["raw"], r["deleted"]) for r in rows}


def history(c):
    rows = json_rows(c, "SELECT call_id, op, field, old_value::text AS o, new_value::text "
                        "AS n, run_id, observed_at FROM vozagent.call_changes "
                        "WHERE source = '%s'" % c.source)
    return Counter((r["call_id"], r["op"], r["field"], dbkey(r["o"]), dbkey(r["n"]),
                    r["run_id"], r["observed_at"]) for r in rows)


def check_observed(c, mode, before, after, sim, when):
    """The mirror after the pass holds what the simulator lists (see the docstring)."""
    bad = []
    for i, (raw, dl) in after.items():
        prev = before.get(i)
        as_sim = i in sim and h.json_diff(sim[i], raw) is None and not dl
        if mode == "backfill":
            if not as_sim and not (i not in sim and dl):
                bad.append("%s: after a backfill %s (the simulator %s it)"
                           % (i, "deleted" if dl else "live, content %s"
                              % h.json_diff(sim.get(i), raw), "lists" if i in sim
                              else "does not list"))
            continue
        as_before = prev is not None and prev[1] == dl and h.json_diff(prev[0], raw) is None
        if not (as_sim or as_before):
            bad.append("%s: after a once neither as the simulator lists it nor as the "
                       "mirror held it before (deleted %s -> %s)" % (i, prev and prev[1], dl))
    if mode == "backfill":
        bad += ["%s: listed, not in the mirror" % i for i in sim if i not in after]
    for i in before:
        if i not in after:
            bad.append("%s: its row is gone from vozagent.calls" % i)
    check(not bad, "%s: the mirror is not what the simulator listed:\n  %s"
          % (when, "\n  ".join(bad[:20])))


def check_history(c, before, after, hist_before, hist_after, run, run_ids, replay, when):
    gone = hist_before - hist_after
    check(not gone, "%s: history rows disappeared: %s" % (when, list(gone)[:3]))
    new = hist_after - hist_before
    t0, t1 = h.parse_instant(run["started_at"]), h.parse_instant(run["finished_at"])
    bad = []
    for (i, op, f, o, n, rid, at) in new:
        if run_ids and rid != run["id"]:
            bad.append("%s %s %s: run_id %s, the pass is run %s" % (i, op, f, rid, run["id"]))
        if not (t0 <= h.parse_instant(at) <= t1):
            bad.append("%s %s %s: observed_at %s outside the pass (%s .. %s)"
                       % (i, op, f, at, run["started_at"], run["finished_at"]))
    got = Counter()
    for (i, op, f, o, n, rid, at), k in new.items():
        got[(i, op, f, o, n)] += k
    exp = Counter()
    for i, (raw, dl) in after.items():
        prev = before.get(i)
        if prev is None:
            exp[(i, "insert", None, None, None)] += 1
            continue
        if dl and not prev[1]:
            exp[(i, "delete", None, None, None)] += 1
        if prev[1] and not dl:
            exp[(i, "undelete", None, None, None)] += 1
        for f, o, n in field_diff(prev[0], raw):
            exp[(i, "update", f, o, n)] += 1
    missing, extra = exp - got, got - exp
    for r in sorted(missing.elements(), key=repr)[:15]:
        bad.append("missing history row %s" % (r,))
    for r in sorted(extra.elements(), key=repr)[:15]:
        bad.append("unexpected history row %s" % (r,))
    # replay: each call rebuilt from its rows alone (its content at its insert is the
    # first observation, which an 'insert' row does not carry)
    for (i, op, f, o, n, rid, at) in sorted(new, key=lambda r: (r[0], r[1] != "insert")):
        if op == "insert":
            replay[i] = [dict(after[i][0]), False]
        elif i not in replay:
            bad.append("%s: a %s row for a call without an insert row" % (i, op))
        elif op == "delete":
            replay[i][1] = True
        elif op == "undelete":
            replay[i][1] = False
        elif op == "update":
            cur = replay[i][0]
            have = jkey(cur[f]) if f in cur else None
            if have != o:
                bad.append("%s: update of %s from %s, the replayed call has %s"
                           % (i, f, o, have))
            if n is None:
                cur.pop(f, None)
            else:
                cur[f] = h.jload_exact(n)
    for i, (raw, dl) in after.items():
        r = replay.get(i)
        if r is None or r[1] != dl or h.json_diff(raw, r[0]) is not None:
            bad.append("%s: replaying its history gives %s, the mirror holds %s (deleted %s)"
                       % (i, h.short(r, 100), h.short(raw, 100), dl))
    check(not bad, "%s: history differs from the changes the mirror observed (%d new rows, "
          "%d expected):\n  %s" % (when, sum(got.values()), sum(exp.values()),
                                   "\n  ".join(bad[:30])))
    ops = Counter()
    for (i, op, f, o, n), k in got.items():
        ops[op] += k
    return ops


# ---------------------------------------------------------------- mutations ----

def shifted(ts, hours):
    t = h.parse_instant(ts)
    if t is None:
        return None
    return (t + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def mutate(c, rng, deleted_pool, rnd, mirror):
    """One round of random changes in the simulator; returns a summary."""
    done = Counter()
    done["new"] += len(c.sim.add(count=rng.randint(2, 6), in_progress=0.4))
    done["late"] += len(c.sim.add(late=rng.randint(1, 3), within_seconds=3000))
    done["finish"] += len(c.sim.finish(count=rng.randint(1, 3)))
    calls = c.sim.calls()
    ids = [x["id"] for x in calls]
    assistants = sorted({x.get("assistant_id") for x in calls if x.get("assistant_id")})
    by_id = {x["id"]: x for x in calls}
    # every kind of update each round, then a few more at random
    kinds = sorted(set(KINDS))
    rng.shuffle(kinds)
    kinds += [rng.choice(KINDS) for _ in range(rng.randint(0, 4))]
    for i, kind in zip(rng.sample(ids, len(kinds)), kinds):
        x = by_id[i]
        s, u = {}, []
        if kind == "lead":
            v = rng.choice(("hot", "warm", "cold", None, ABSENT))
            if v is ABSENT:
                u.append("lead_qualification")
            else:
                s["lead_qualification"] = v
        elif kind == "booked":
            s["appointment_booked"] = not x.get("appointment_booked")
        elif kind == "type":
            s["call_type"] = "outbound" if x.get("call_type") == "inbound" else "inbound"
        elif kind == "assistant":
            s["assistant_id"] = rng.choice(assistants + ["a5515700-new0-%04d" % rnd])
        elif kind == "start":
            t = shifted(x.get("call_started_at"), rng.choice((-1, 1)) * rng.randint(20, 30))
            if t is None:
                continue
            s["call_started_at"] = t
        elif kind == "duration":
            s["duration_seconds"] = Decimal("%d.%d" % (rng.randint(0, 900), rng.randint(0, 9)))
        elif kind == "vendor":
            s["sentiment"] = Decimal("%.2f" % rng.uniform(-1, 1))
        else:
            u.append(rng.choice(("call_type", "assistant_id", "duration_seconds",
                                 "call_intent", "appointment_booked", "sentiment")))
        c.sim.update(ids=[i], set=s, unset=u)
        done["update:" + kind] += 1
    # changed and changed back before the pass: the mirror never sees it
    i = rng.choice(ids)
    x = c.sim.calls()
    x = next(r for r in x if r["id"] == i)
    orig = x.get("lead_qualification", ABSENT)
    c.sim.update(ids=[i], set={"lead_qualification": "flip-%d" % rnd})
    if orig is ABSENT:
        c.sim.update(ids=[i], set={}, unset=["lead_qualification"])
    else:
        c.sim.update(ids=[i], set={"lead_qualification": orig})
    done["undone"] += 1
    # deletions, and deleted calls coming back (some changed)
    gone = c.sim.delete(ids=rng.sample(ids, rng.randint(1, 4)))
    done["delete"] += len(gone)
    back = [r for r in deleted_pool if rng.random() < 0.5]
    # at least one call the mirror holds as deleted comes back: an 'undelete'
    marked = [r for r in deleted_pool if mirror.get(r["id"], (None, False))[1]]
    if marked and not any(r in marked for r in back):
        back.append(marked[0])
    for r in back:
        deleted_pool.remove(r)
        if rng.random() < 0.5:
            r["lead_qualification"] = rng.choice(("hot", "warm", "cold"))
    if back:
        c.sim.add(records=back)
        done["back"] += len(back)
    deleted_pool.extend(gone)
    return dict(done)


def scenario(order, seed):
    rng = random.Random(seed)
    with h.Case("bi_property", order=order, seed=seed, calls=0, page_size=PAGE,
                env=ENV) as c:
        t0 = time.monotonic()
        how = h.set_report_zone(c, ZONE)
        run_ids = how == "config"     # a binary with the key also sets vozagent.run_id
        c.sim.reset(seed=seed, calls=N, in_progress_recent=40, in_progress_stuck=3)
        before, hist = {}, Counter()
        replay, deleted_pool = {}, []
        made, ops = Counter(), Counter()
        modes = ["backfill"] + ["once" if r % 2 else "backfill" for r in range(1, ROUNDS + 1)]
        modes[-1] = "backfill"
        for rnd, mode in enumerate(modes):
            done = mutate(c, rng, deleted_pool, rnd, before) if rnd else {"initial": N}
            when = "round %d (%s)" % (rnd, mode)
            c.expect_rc(c.run(mode), 0, when)
            if rnd == 0:
                h.check_report_zone(c, ZONE, how)
            run = c.last_run()
            check(run["outcome"] == "ok", "%s: run outcome %s" % (when, run["outcome"]))
            sim = {x["id"]: x for x in c.sim.calls()}
            after = mirror_state(c)
            check_observed(c, mode, before, after, sim, when)
            hist_after = history(c)
            n = check_history(c, before, after, hist, hist_after, run, run_ids, replay, when)
            groups = check_rollup(c, when)
            h.log("%s: %s; history rows as observed: %s; rollup = calls (%d groups)"
                  % (when, done, dict(n), groups))
            made.update(done)
            ops.update(n)
            before, hist = after, hist_after
        kinds = ["update:" + k for k in sorted(set(KINDS))] + ["new", "late", "finish", "undone", "delete",
                                                  "back"]
        check(all(made[k] for k in kinds), "test data: some kind of change never made: %s"
              % {k: made[k] for k in kinds})
        check(all(ops[k] for k in ("insert", "update", "delete", "undelete")),
              "test data: some kind of history row never written: %s" % dict(ops))
        h.log("bi_property[%s]: %.1fs" % (order, time.monotonic() - t0))


if __name__ == "__main__":
    h.main(h.property_orders(scenario, "rollup and history under random changes", 1001))
