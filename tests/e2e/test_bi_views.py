#!/usr/bin/env python3
"""The BI views (sql/007_bi.sql, docs/bi.md) against a small hand-made set of calls,
mirrored by the real binary from the simulator, with every expected answer written
out by hand below (dates, counts, medians and percentiles worked out on paper), not
computed by SQL.

The reporting time zone is Europe/Berlin, whose clocks went from 02:00 CET to 03:00
CEST on Sunday 2026-03-29 (01:00 UTC). The fixed calls (ids call-b1f0NN) fall on
  D1 Fri 2026-03-27 (UTC+1)  five calls of assistant A (a group whose median and p90
                             are checked), a call of B that crosses local midnight
  D2 Sat 2026-03-28 (UTC+1)  a call at 00:30 local that is still 2026-03-27 in UTC,
                             an in-progress call
  D3 Sun 2026-03-29 (DST)    calls at 01:30 CET, 01:59:59 CET and 03:30 CEST: hour 1,
                             1 and 3 (no hour 2 that day)
  D4 Mon 2026-03-30          no live call (its only call is deleted by the simulator)
  D5 Tue 2026-03-31 (UTC+2)  calls finished between two passes, a reopened call, a call
                             without assistant or type, one without status
plus eight calls of assistant C at days relative to today (Berlin), for the 7/30/90 day
periods of assistant_performance. Pass 1 (backfill) mirrors them; the simulator then
finishes, re-qualifies, reopens, deletes (and changes and reverts one field of f09);
pass 2 (backfill) sees it all and marks the deletions; pass 3 (once) writes nothing. A
failed pass and a good one then drive sync_freshness. A login role granted
vozagent_reader reads every view and call_changes, and is refused (SQLSTATE 42501)
everything else: the internal tables, any write, CREATE in the schema. Last, a
person's UPDATE and hard DELETE in psql show in the history with run_id NULL."""

import datetime as dt
import subprocess
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import harness as h
from harness import check

ZONE = "Europe/Berlin"
BERLIN = ZoneInfo(ZONE)
UTC = dt.timezone.utc
A, B, C = "a5515700-000a-bi01", "a5515700-000b-bi01", "a5515700-000c-bi01"
ENV = {"VOZAGENT_MAX_DELETE_FRACTION": "100%", "VOZAGENT_PAGE_SIZE": "10"}


def cid(n):
    return "call-b1f0%04d-0000-0000-%04d" % (n, n)


def contact(n):
    return "c0ffee00-b100-%04d" % n


def rec(n, start, status="completed", assistant=A, ctype="inbound", dur=None,
        booked=False, qual="-", who=None, **extra):
    """A call record; '-' or None for a field means the key is absent (qual=None means
    JSON null)."""
    r = {"id": cid(n)}
    if who is not None:
        r["contact_id"] = contact(who)
    if assistant is not None:
        r["assistant_id"] = assistant
    if ctype is not None:
        r["call_type"] = ctype
    if status is not None:
        r["call_status"] = status
    if dur is not None:
        r["duration_seconds"] = Decimal(str(dur))
    r["call_started_at"] = start
    if dur is not None and status != "in-progress":
        t = h.parse_instant(start) + dt.timedelta(seconds=float(dur))
        r["call_ended_at"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if booked is not None:
        r["appointment_booked"] = booked
    if qual != "-":
        r["lead_qualification"] = qual
    r.update(extra)
    return r


# The fixed calls as pass 1 sees them. Local (Berlin) time, hour and weekday in the
# comments; "-> " what pass 2 sees.
FIXED = [
    # D1 Fri 2026-03-27, UTC+1: group (A, inbound): durations 100 200 300 10 600
    rec(1, "2026-03-27T08:00:00Z", dur=100, booked=True, qual="hot", who=1,
        sentiment=Decimal("0.5")),                                    # 09:00 h9
    rec(2, "2026-03-27T09:00:00Z", dur=200, qual="warm", who=2),      # 10:00 -> cold
    rec(3, "2026-03-27T09:30:00Z", dur=300, qual="cold", who=3),      # 10:30 -> +sentiment
    rec(4, "2026-03-27T10:00:00Z", status="failed", dur=10, who=4),  # 11:00
    rec(5, "2026-03-27T11:00:00Z", dur=600, booked=True, qual="warm", who=1,
        sentiment=Decimal("-0.2")),                                   # 12:00
    # 23:50 local, ends 00:20 the next day: still D1
    rec(6, "2026-03-27T22:50:00Z", assistant=B, ctype="outbound", dur="60.5", qual="hot",
        who=5),
    # D2 Sat 2026-03-28: 00:30 local, 2026-03-27 in UTC
    rec(7, "2026-03-27T23:30:00Z", assistant=B, ctype="outbound", dur=120, booked=True,
        qual="warm", who=2),
    rec(8, "2026-03-28T15:00:00Z", status="in-progress", ctype="outbound", booked=None,
        qual=None, who=3),                                            # 16:00, stays running
    rec(9, "2026-03-28T12:00:00Z", assistant=B, dur=45, qual="cold", who=4,
        sentiment=Decimal("0.1")),                                    # 13:00
    # D3 Sun 2026-03-29: CET until 01:00 UTC, CEST after
    rec(10, "2026-03-29T00:30:00Z", dur=30, qual="hot", who=1),       # 01:30 CET h1 -> no qual
    rec(11, "2026-03-29T01:30:00Z", dur=90, booked=True, qual="hot", who=5),  # 03:30 CEST h3
    rec(12, "2026-03-29T00:59:59Z", status="failed", dur=0),          # 01:59:59 CET h1
    rec(13, "2026-03-29T21:30:00Z", assistant=B, dur=240, qual="warm", who=2),  # 23:30 h23
    # D5 Tue 2026-03-31, UTC+2
    rec(14, "2026-03-31T12:00:00Z", dur=150, qual="cold", who=3),     # 14:00 -> hot
    rec(15, "2026-03-31T13:00:00Z", status="in-progress", booked=None, qual=None,
        who=1),                                                       # 15:00 -> completed
    rec(16, "2026-03-31T14:00:00Z", status="in-progress", assistant=B, ctype="outbound",
        booked=None, who=11),                                         # 16:00 -> failed
    rec(17, "2026-03-31T15:00:00Z", assistant=None, ctype=None, dur=20, who=2),  # 17:00 -> warm
    # deleted by the simulator after pass 1
    rec(19, "2026-03-27T10:30:00Z", dur=999, booked=True, qual="hot", who=1,
        sentiment=Decimal("0.9")),                                    # D1
    rec(20, "2026-03-30T10:00:00Z", assistant=B, dur=50, booked=True, qual="warm",
        who=6),                                                       # D4
    rec(21, "2026-03-31T16:00:00Z", ctype="outbound", dur=33, who=5),  # 18:00 -> reopened
    rec(22, "2026-03-31T18:00:00Z", status=None, assistant=B, booked=None),  # 20:00, no status
]

# Assistant C, relative to today in Berlin: (n, days ago, local hour, status, type,
# duration, booked, qualification, contact)
RELATIVE = [
    (31, 0, 0, "completed", "inbound", 100, True, "hot", 7),
    (32, 1, 12, "completed", "inbound", 200, False, "warm", 7),
    (33, 6, 12, "failed", "inbound", 10, False, "-", 8),
    (34, 7, 12, "completed", "outbound", 300, True, "cold", 8),
    (35, 29, 12, "completed", "inbound", 400, False, "hot", 9),
    (36, 30, 12, "failed", "inbound", 20, False, "warm", 9),
    (37, 89, 12, "completed", "inbound", 500, True, "cold", 10),
    (38, 90, 12, "completed", "inbound", 600, True, "hot", 10),
]


def D(s):
    return dt.date.fromisoformat(s)


def ts(s):
    return h.parse_instant(s)


class Checker:
    """Collects every mismatch of a view instead of stopping at the first."""

    def __init__(self, what):
        self.what, self.errors = what, []

    def eq(self, where, col, got, exp):
        if not same(got, exp):
            self.errors.append("%s %s: %s = %r, expected %r" % (self.what, where, col, got,
                                                                  exp))

    def row(self, where, got, exp):
        if got is None:
            self.errors.append("%s %s: no row" % (self.what, where))
            return
        for col, v in exp.items():
            if col not in got:
                self.errors.append("%s: no column %s" % (self.what, col))
            else:
                self.eq(where, col, got[col], v)

    def done(self):
        check(not self.errors, "%d mismatch(es):\n  %s" % (len(self.errors),
                                                          "\n  ".join(self.errors[:40])))
        h.log("%s: as expected" % self.what)


def same(got, exp):
    if exp is None or got is None:
        return exp is None and got is None
    if isinstance(exp, bool) or isinstance(got, bool):
        return type(exp) is type(got) and exp == got
    if isinstance(exp, (int, Fraction, Decimal)) and not isinstance(got, str):
        e = Fraction(exp) if not isinstance(exp, Fraction) else exp
        tol = Fraction(1, 10**9)
        if isinstance(got, Decimal) and got.as_tuple().exponent < 0:
            # 007 rounds rates and averages for display (docs/bi.md): a value shown
            # with N decimals must be the exact answer rounded to N decimals
            tol = max(tol, Fraction(1, 2 * 10**-got.as_tuple().exponent))
        return abs(Fraction(got) - e) <= tol
    if isinstance(exp, dt.datetime):
        return ts(got) == exp
    if isinstance(exp, dt.date):
        return got == exp.isoformat()
    if isinstance(exp, dt.timedelta):
        return got == exp
    return got == exp


def rows(c, sql):
    return c.qjson("SELECT coalesce(json_agg(x), '[]') FROM (%s) x" % sql)


def keyed(rs, *cols):
    out = {}
    for r in rs:
        k = tuple(r[x] for x in cols)
        check(k not in out, "two rows for %s = %s" % (cols, k))
        out[k] = r
    return out


def scenario():
    with h.Case("bi_views", order="newest_first", calls=0, env=ENV) as c:
        how = h.set_report_zone(c, ZONE)
        today = dt.datetime.now(BERLIN).date()
        check(today - dt.timedelta(days=90) > D("2026-04-01"),
              "the relative calls would meet the fixed ones: the clock says %s" % today)
        relative = []
        rel_start = {}
        for (n, ago, hour, status, ctype, dur, booked, qual, who) in RELATIVE:
            day = today - dt.timedelta(days=ago)
            start = dt.datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).astimezone(UTC)
            rel_start[n] = (day, start)
            relative.append(rec(n, start.strftime("%Y-%m-%dT%H:%M:%SZ"), status=status,
                                assistant=C, ctype=ctype, dur=dur, booked=booked, qual=qual,
                                who=who))
        c.sim.add(records=FIXED + relative)

        # pass 1
        c.expect_rc(c.run("backfill"), 0, "pass 1 (backfill)")
        h.check_report_zone(c, ZONE, how)
        c.assert_exact("after pass 1")
        run1 = c.last_run()
        check(c.scalar("SELECT count(*) FROM vozagent.call_changes") == "29",
              "pass 1 inserted 29 calls: expected 29 history rows")

        # what pass 2 sees
        c.sim.delete(ids=[cid(19), cid(20)])
        c.sim.update(ids=[cid(15)], set={"call_status": "completed",
                                         "duration_seconds": 75,
                                         "call_ended_at": "2026-03-31T13:01:15Z",
                                         "appointment_booked": True,
                                         "lead_qualification": "hot"})
        c.sim.update(ids=[cid(16)], set={"call_status": "failed", "duration_seconds": 5,
                                         "appointment_booked": False})
        c.sim.update(ids=[cid(14)], set={"lead_qualification": "hot"})
        c.sim.update(ids=[cid(2)], set={"lead_qualification": "cold"})
        c.sim.update(ids=[cid(17)], set={"lead_qualification": "warm"})
        c.sim.update(ids=[cid(10)], set={}, unset=["lead_qualification"])
        c.sim.update(ids=[cid(21)], set={"call_status": "in-progress"},
                     unset=["duration_seconds", "call_ended_at"])
        c.sim.update(ids=[cid(3)], set={"sentiment": Decimal("0.3")})
        # changed and changed back between two passes: never seen
        c.sim.update(ids=[cid(9)], set={"call_intent": "billing"})
        c.sim.update(ids=[cid(9)], set={}, unset=["call_intent"])

        c.expect_rc(c.run("backfill"), 0, "pass 2 (backfill)")
        c.assert_exact_but_deleted("after pass 2", [])
        run2 = c.last_run()
        check(run2["marked_deleted"] == 2, "pass 2 marked %s calls deleted, expected 2"
              % run2["marked_deleted"])
        n_hist = c.scalar("SELECT count(*) FROM vozagent.call_changes")
        c.expect_rc(c.run("once"), 0, "pass 3 (once, nothing changed)")
        check(c.scalar("SELECT count(*) FROM vozagent.call_changes") == n_hist,
              "pass 3 changed nothing, yet call_changes grew from %s rows" % n_hist)

        checks = [
            ("history", lambda: check_history(c, run1, run2)),
            ("calls_live", lambda: check_calls_live(c, rel_start)),
            ("calls_daily", lambda: check_calls_daily(c, rel_start)),
            ("daily_totals", lambda: check_daily_totals(c, today, rel_start)),
            ("assistant_performance", lambda: check_assistant_performance(c)),
            ("lead_funnel", lambda: check_lead_funnel(c, rel_start)),
            ("contacts", lambda: check_contacts(c, rel_start)),
            ("calls_hourly", lambda: check_calls_hourly(c, rel_start)),
            ("hourly_heatmap", lambda: check_heatmap(c, rel_start)),
            ("raw_fields", lambda: check_raw_fields(c)),
            ("call_status_durations", lambda: check_status_durations(c, run2)),
            ("lead_upgrades", lambda: check_lead_upgrades(c, run2)),
            ("sync_freshness", lambda: check_freshness(c, rel_start)),
            ("reader role", lambda: check_reader(c)),
            ("a person's psql", lambda: check_psql_writes(c)),
        ]
        failed = []
        for name, fn in checks:
            try:
                fn()
            except h.TestFailure as e:
                failed.append(name)
                print("FAIL %s: %s" % (name, e), flush=True)
        check(not failed, "%d view check(s) failed: %s" % (len(failed), ", ".join(failed)))


# ------------------------------------------------------------------ history ----

def jv(v):
    """A JSON value as the test compares it (None is JSON null)."""
    return h.dumps_exact(v)


def dbv(text):
    """A jsonb column read as text: SQL NULL (an absent key) stays None."""
    return None if text is None else jv(h.jload_exact(text))


def check_history(c, run1, run2):
    got = rows(c, "SELECT call_id, op, field, old_value::text AS old_value, "
                  "new_value::text AS new_value, run_id, observed_at "
                  "FROM vozagent.call_changes WHERE source = 'e2e'")
    ins = [r for r in got if r["op"] == "insert"]
    check(len(ins) == 29 and all(r["field"] is None and r["old_value"] is None and
                                 r["new_value"] is None for r in ins),
          "expected 29 insert rows without field or values: %s" % ins[:3])
    later = sorted(((r["call_id"], r["op"], r["field"], dbv(r["old_value"]),
                    dbv(r["new_value"])) for r in got if r["op"] != "insert"), key=repr)
    N = None
    end15 = "2026-03-31T13:01:15Z"
    end21 = jv(FIXED[19]["call_ended_at"])
    exp = sorted([
        (cid(2), "update", "lead_qualification", '"warm"', '"cold"'),
        (cid(3), "update", "sentiment", N, "0.3"),
        (cid(10), "update", "lead_qualification", '"hot"', N),
        (cid(14), "update", "lead_qualification", '"cold"', '"hot"'),
        (cid(15), "update", "call_status", '"in-progress"', '"completed"'),
        (cid(15), "update", "duration_seconds", N, "75"),
        (cid(15), "update", "call_ended_at", N, '"%s"' % end15),
        (cid(15), "update", "appointment_booked", N, "true"),
        (cid(15), "update", "lead_qualification", "null", '"hot"'),
        (cid(16), "update", "call_status", '"in-progress"', '"failed"'),
        (cid(16), "update", "duration_seconds", N, "5"),
        (cid(16), "update", "appointment_booked", N, "false"),
        (cid(17), "update", "lead_qualification", N, '"warm"'),
        (cid(19), "delete", N, N, N),
        (cid(20), "delete", N, N, N),
        (cid(21), "update", "call_status", '"completed"', '"in-progress"'),
        (cid(21), "update", "duration_seconds", "33", N),
        (cid(21), "update", "call_ended_at", end21, N),
    ], key=repr)
    check(later == exp, "history after pass 1: expected\n  %s\ngot\n  %s" % (
        "\n  ".join(map(str, exp)), "\n  ".join(map(str, later))))
    # pass 1's rows are its run's, pass 2's the second run's (when the daemon tells)
    ids = {r["run_id"] for r in got}
    if ids != {None}:
        check({r["run_id"] for r in ins} == {run1["id"]} and
              {r["run_id"] for r in got if r["op"] != "insert"} == {run2["id"]},
              "run_id of history rows: %s, runs %s and %s" % (ids, run1["id"], run2["id"]))
    else:
        h.log("history: run_id NULL everywhere (this binary does not set vozagent.run_id)")
    for r in got:
        run = run1 if r["op"] == "insert" else run2
        check(ts(run["started_at"]) <= ts(r["observed_at"]) <= ts(run["finished_at"]),
              "observed_at %s outside its pass %s..%s" % (r["observed_at"], run["started_at"],
                                                          run["finished_at"]))
    h.log("history: 29 inserts, then exactly the 18 changes the simulator made")


# --------------------------------------------------------------- the views ----

def check_calls_live(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.calls_live WHERE source = 'e2e'"), "id")
    k = Checker("calls_live")
    live = {cid(n) for n in list(range(1, 18)) + [21, 22] + [x[0] for x in RELATIVE]}
    k.eq("", "ids", sorted(x[0] for x in got), sorted(live))
    # call_date hour_of_day weekday is_finished duration_minutes is_qualified
    exp = {
        1: ("2026-03-27", 9, 5, True, Fraction(100, 60), True),
        2: ("2026-03-27", 10, 5, True, Fraction(200, 60), False),
        4: ("2026-03-27", 11, 5, True, Fraction(10, 60), None),
        6: ("2026-03-27", 23, 5, True, Fraction(605, 600), True),
        7: ("2026-03-28", 0, 6, True, Fraction(2), True),
        8: ("2026-03-28", 16, 6, False, None, None),
        10: ("2026-03-29", 1, 7, True, Fraction(1, 2), None),
        11: ("2026-03-29", 3, 7, True, Fraction(3, 2), True),
        12: ("2026-03-29", 1, 7, True, Fraction(0), None),
        13: ("2026-03-29", 23, 7, True, Fraction(4), True),
        14: ("2026-03-31", 14, 2, True, Fraction(150, 60), True),
        15: ("2026-03-31", 15, 2, True, Fraction(75, 60), True),
        16: ("2026-03-31", 16, 2, True, Fraction(5, 60), None),
        21: ("2026-03-31", 18, 2, False, None, None),
        22: ("2026-03-31", 20, 2, None, None, None),
    }
    for n, (d, hour, wd, fin, mins, qual) in exp.items():
        k.row(cid(n), got.get((cid(n),)),
              {"call_date": D(d), "hour_of_day": hour, "weekday": wd, "is_finished": fin,
               "duration_minutes": mins, "is_qualified": qual,
               "report_time_zone": ZONE, "source": "e2e"})
    day, _ = rel_start[31]
    k.row(cid(31), got.get((cid(31),)), {"call_date": day, "hour_of_day": 0,
                                         "weekday": day.isoweekday()})
    r = got.get((cid(6),))
    if r:
        k.eq(cid(6), "call_started_at", r["call_started_at"], ts("2026-03-27T22:50:00Z"))
        k.eq(cid(6), "assistant_id", r["assistant_id"], B)
        k.eq(cid(6), "duration_seconds", r["duration_seconds"], Decimal("60.5"))
        k.eq(cid(6), "raw.sentiment", "sentiment" in (r.get("raw") or {}), False)
    r = got.get((cid(1),))
    if r:
        k.eq(cid(1), "raw.sentiment", (r.get("raw") or {}).get("sentiment"), Decimal("0.5"))
        for col in ("contact_id", "call_type", "call_status", "call_ended_at",
                    "appointment_booked", "lead_qualification", "call_intent",
                    "first_seen_at", "updated_at"):
            k.eq(cid(1), "has column " + col, col in r, True)
    k.done()


def check_calls_daily(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.calls_daily WHERE source = 'e2e'"),
                "call_date", "assistant_id", "call_type")
    k = Checker("calls_daily")
    F = Fraction
    # (date, assistant, type): calls completed failed in_progress booked booking_rate
    #   total avg median p90 hot warm cold
    exp = {
        ("2026-03-27", A, "inbound"): (5, 4, 1, 0, 2, F(2, 5), 1210, 242, 200, 480, 1, 1, 2),
        ("2026-03-27", B, "outbound"): (1, 1, 0, 0, 0, 0, F(121, 2), F(121, 2), F(121, 2),
                                        F(121, 2), 1, 0, 0),
        ("2026-03-28", B, "outbound"): (1, 1, 0, 0, 1, 1, 120, 120, 120, 120, 0, 1, 0),
        ("2026-03-28", A, "outbound"): (1, 0, 0, 1, 0, 0, "n/a", None, None, None, 0, 0, 0),
        ("2026-03-28", B, "inbound"): (1, 1, 0, 0, 0, 0, 45, 45, 45, 45, 0, 0, 1),
        ("2026-03-29", A, "inbound"): (3, 2, 1, 0, 1, F(1, 3), 120, 40, 30, 78, 1, 0, 0),
        ("2026-03-29", B, "inbound"): (1, 1, 0, 0, 0, 0, 240, 240, 240, 240, 0, 1, 0),
        ("2026-03-31", A, "inbound"): (2, 2, 0, 0, 1, F(1, 2), 225, F(225, 2), F(225, 2),
                                       F(285, 2), 2, 0, 0),
        ("2026-03-31", B, "outbound"): (1, 0, 1, 0, 0, 0, 5, 5, 5, 5, 0, 0, 0),
        ("2026-03-31", None, None): (1, 1, 0, 0, 0, 0, 20, 20, 20, 20, 0, 1, 0),
        ("2026-03-31", A, "outbound"): (1, 0, 0, 1, 0, 0, "n/a", None, None, None, 0, 0, 0),
        ("2026-03-31", B, "inbound"): (1, 0, 0, 0, 0, 0, "n/a", None, None, None, 0, 0, 0),
    }
    for (n, ago, hour, status, ctype, dur, booked, qual, who) in RELATIVE:
        exp[(rel_start[n][0].isoformat(), C, ctype)] = (
            1, int(status == "completed"), int(status == "failed"), 0, int(booked),
            int(booked), dur, dur, dur, dur, int(qual == "hot"), int(qual == "warm"),
            int(qual == "cold"))
    k.eq("", "groups", sorted(got, key=repr), sorted(exp, key=repr))
    cols = ("calls", "completed", "failed", "in_progress", "booked", "booking_rate",
            "total_duration_seconds", "avg_duration_seconds", "median_duration_seconds",
            "p90_duration_seconds", "hot", "warm", "cold")
    for key, vals in exp.items():
        r = got.get(key)
        want = dict(zip(cols, vals))
        if want["total_duration_seconds"] == "n/a":
            # no call with a duration: the spec does not say 0 or NULL
            del want["total_duration_seconds"]
            if r and r.get("total_duration_seconds") not in (None, 0):
                k.eq(key, "total_duration_seconds", r["total_duration_seconds"], 0)
        k.row(key, r, want)
    k.done()


def check_daily_totals(c, today, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.daily_totals WHERE source = 'e2e'"),
                "call_date")
    k = Checker("daily_totals")
    F = Fraction
    # calls completed failed in_progress booked booking_rate
    exp = {
        D("2026-03-27"): (6, 5, 1, 0, 2, F(1, 3)),
        D("2026-03-28"): (3, 2, 0, 1, 1, F(1, 3)),
        D("2026-03-29"): (4, 3, 1, 0, 1, F(1, 4)),
        D("2026-03-30"): (0, 0, 0, 0, 0, None),      # its only call is deleted
        D("2026-03-31"): (6, 3, 1, 1, 1, F(1, 6)),
    }
    for (n, ago, hour, status, ctype, dur, booked, qual, who) in RELATIVE:
        exp[rel_start[n][0]] = (1, int(status == "completed"), int(status == "failed"), 0,
                                int(booked), int(booked))
    first = D("2026-03-27")
    days = [first + dt.timedelta(days=i) for i in range((today - first).days + 1)]
    k.eq("", "days", sorted(x[0] for x in got), [d.isoformat() for d in days])
    cols = ("calls", "completed", "failed", "in_progress", "booked", "booking_rate")
    for d in days:
        k.row(d.isoformat(), got.get((d.isoformat(),)),
              dict(zip(cols, exp.get(d, (0, 0, 0, 0, 0, None)))))
    k.done()


def check_assistant_performance(c):
    got = keyed(rows(c, "SELECT * FROM vozagent.assistant_performance WHERE source = 'e2e'"),
                "assistant_id", "period")
    k = Checker("assistant_performance")
    F = Fraction
    # C's calls: today(100, booked, hot) -1(200, warm) -6(failed 10) | -7(300, booked, cold)
    # -29(400, hot) | -30(failed 20, warm) -89(500, booked, cold) | -90(600: outside)
    exp = {
        "7 days": (7, 3, 2, 1, 1, F(1, 3), 1, 1, 0, F(1, 3), F(1, 3), 0, F(310, 3), F(1, 3)),
        "30 days": (30, 5, 4, 1, 2, F(2, 5), 2, 1, 1, F(2, 5), F(1, 5), F(1, 5), 202, F(1, 5)),
        "90 days": (90, 7, 5, 2, 3, F(3, 7), 2, 2, 2, F(2, 7), F(2, 7), F(2, 7), F(1530, 7),
                    F(2, 7)),
    }
    cols = ("period_days", "calls", "completed", "failed", "booked", "booking_rate", "hot",
            "warm", "cold", "hot_share", "warm_share", "cold_share", "avg_duration_seconds",
            "failed_share")
    for period, vals in exp.items():
        k.row((C, period), got.get((C, period)), dict(zip(cols, vals)))
    # A and B had calls in March 2026 only: no calls in any period
    for (asst, period), r in got.items():
        if asst != C:
            k.eq((asst, period), "calls", r["calls"], 0)
    k.eq("", "periods of C", sorted(p for (a, p) in got if a == C),
         ["30 days", "7 days", "90 days"])
    k.done()


def check_lead_funnel(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.lead_funnel WHERE source = 'e2e'"),
                "call_date", "assistant_id")
    k = Checker("lead_funnel")
    # calls completed qualified booked
    exp = {
        ("2026-03-27", A): (5, 4, 2, 2),
        ("2026-03-27", B): (1, 1, 1, 0),
        ("2026-03-28", A): (1, 0, 0, 0),
        ("2026-03-28", B): (2, 2, 1, 1),
        ("2026-03-29", A): (3, 2, 1, 1),
        ("2026-03-29", B): (1, 1, 1, 0),
        ("2026-03-31", A): (3, 2, 2, 1),
        ("2026-03-31", B): (2, 0, 0, 0),
        ("2026-03-31", None): (1, 1, 1, 0),
    }
    for (n, ago, hour, status, ctype, dur, booked, qual, who) in RELATIVE:
        q = status == "completed" and qual in ("hot", "warm")
        exp[(rel_start[n][0].isoformat(), C)] = (1, int(status == "completed"), int(q),
                                                 int(q and booked))
    k.eq("", "rows", sorted(got, key=repr), sorted(exp, key=repr))
    for key, vals in exp.items():
        k.row(key, got.get(key), dict(zip(("calls", "completed", "qualified", "booked"),
                                          vals)))
    k.done()


def check_contacts(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.contacts WHERE source = 'e2e'"), "contact_id")
    k = Checker("contacts")
    # first_call_at last_call_at calls booked_ever best_qualification
    exp = {
        1: ("2026-03-27T08:00:00Z", "2026-03-31T13:00:00Z", 4, True, "hot"),
        2: ("2026-03-27T09:00:00Z", "2026-03-31T15:00:00Z", 4, True, "warm"),
        3: ("2026-03-27T09:30:00Z", "2026-03-31T12:00:00Z", 3, False, "hot"),
        4: ("2026-03-27T10:00:00Z", "2026-03-28T12:00:00Z", 2, False, "cold"),
        5: ("2026-03-27T22:50:00Z", "2026-03-31T16:00:00Z", 3, True, "hot"),
        11: ("2026-03-31T14:00:00Z", "2026-03-31T14:00:00Z", 1, False, None),
    }
    exp = {contact(n): (ts(a), ts(b), m, bk, q) for n, (a, b, m, bk, q) in exp.items()}
    r = {n: rel_start[n][1] for n in rel_start}
    exp[contact(7)] = (r[32], r[31], 2, True, "hot")
    exp[contact(8)] = (r[34], r[33], 2, True, "cold")
    exp[contact(9)] = (r[36], r[35], 2, False, "hot")
    exp[contact(10)] = (r[38], r[37], 2, True, "hot")
    # contact 6 had only the deleted call 20
    k.eq("", "contacts", sorted(x[0] for x in got), sorted(exp))
    for who, vals in exp.items():
        k.row(who, got.get((who,)), dict(zip(("first_call_at", "last_call_at", "calls",
                                              "booked_ever", "best_qualification"), vals)))
    k.done()


# (weekday, hour, date, assistant, type) -> (calls, booked), the fixed calls
HOURLY = {
    (5, 9, "2026-03-27", A, "inbound"): (1, 1),
    (5, 10, "2026-03-27", A, "inbound"): (2, 0),
    (5, 11, "2026-03-27", A, "inbound"): (1, 0),
    (5, 12, "2026-03-27", A, "inbound"): (1, 1),
    (5, 23, "2026-03-27", B, "outbound"): (1, 0),
    (6, 0, "2026-03-28", B, "outbound"): (1, 1),
    (6, 16, "2026-03-28", A, "outbound"): (1, 0),
    (6, 13, "2026-03-28", B, "inbound"): (1, 0),
    (7, 1, "2026-03-29", A, "inbound"): (2, 0),
    (7, 3, "2026-03-29", A, "inbound"): (1, 1),
    (7, 23, "2026-03-29", B, "inbound"): (1, 0),
    (2, 14, "2026-03-31", A, "inbound"): (1, 0),
    (2, 15, "2026-03-31", A, "inbound"): (1, 1),
    (2, 16, "2026-03-31", B, "outbound"): (1, 0),
    (2, 17, "2026-03-31", None, None): (1, 0),
    (2, 18, "2026-03-31", A, "outbound"): (1, 0),
    (2, 20, "2026-03-31", B, "inbound"): (1, 0),
}


def hourly_expected(rel_start):
    exp = dict(HOURLY)
    for (n, ago, hour, status, ctype, dur, booked, qual, who) in RELATIVE:
        day = rel_start[n][0]
        exp[(day.isoweekday(), hour, day.isoformat(), C, ctype)] = (1, int(booked))
    return exp


def check_calls_hourly(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.calls_hourly WHERE source = 'e2e'"),
                "weekday", "hour_of_day", "call_date", "assistant_id", "call_type")
    k = Checker("calls_hourly")
    exp = hourly_expected(rel_start)
    k.eq("", "rows", sorted(got, key=repr), sorted(exp, key=repr))
    for key, (n, b) in exp.items():
        k.row(key, got.get(key), {"calls": n, "booked": b})
    k.done()


def check_heatmap(c, rel_start):
    got = keyed(rows(c, "SELECT * FROM vozagent.hourly_heatmap WHERE source = 'e2e'"),
                "weekday", "hour_of_day")
    k = Checker("hourly_heatmap")
    exp = {}
    for (wd, hour, *_), (n, b) in hourly_expected(rel_start).items():
        cn, cb = exp.get((wd, hour), (0, 0))
        exp[(wd, hour)] = (cn + n, cb + b)
    # cells with no call: absent, or zeros
    for key, r in got.items():
        if key not in exp:
            k.eq(key, "calls", r["calls"], 0)
    for key, (n, b) in exp.items():
        k.row(key, got.get(key), {"calls": n, "booked": b, "booking_rate": Fraction(b, n)})
    k.done()


def check_raw_fields(c):
    got = keyed(rows(c, "SELECT * FROM vozagent.raw_fields WHERE source = 'e2e'"), "field")
    k = Checker("raw_fields")
    live = 27
    first = c.scalar("SELECT to_json(min(first_seen_at)) FROM vozagent.calls "
                     "WHERE raw ? 'sentiment'").strip('"')
    # sentiment: f01 f05 f09 and f03 (added in pass 2) live; f19 had it and is deleted
    k.row("sentiment", got.get(("sentiment",)),
          {"calls": 4, "share": Fraction(4, live), "is_column": False,
           "first_call_at": ts("2026-03-27T08:00:00Z"),
           "last_call_at": ts("2026-03-28T12:00:00Z"), "first_seen_at": ts(first)})
    # lead_qualification: a key, even when its value is JSON null (f08); f10 lost it
    k.row("lead_qualification", got.get(("lead_qualification",)),
          {"calls": 20, "share": Fraction(20, live), "is_column": True})
    k.row("call_status", got.get(("call_status",)),
          {"calls": 26, "share": Fraction(26, live), "is_column": True})
    k.row("duration_seconds", got.get(("duration_seconds",)),
          {"calls": 24, "is_column": True})
    k.row("contact_id", got.get(("contact_id",)), {"calls": 25, "is_column": True})
    k.eq("", "call_intent (never stored)", ("call_intent",) in got and
         got[("call_intent",)]["calls"] != 0, False)
    k.done()


def check_status_durations(c, run2):
    got = keyed(rows(c, "SELECT * FROM vozagent.call_status_durations WHERE source = 'e2e'"),
                "call_id")
    k = Checker("call_status_durations")
    seen = {x["id"]: x for x in rows(c, "SELECT id, first_seen_at FROM vozagent.calls")}
    change = {x["call_id"]: x["observed_at"] for x in rows(
        c, "SELECT call_id, observed_at FROM vozagent.call_changes WHERE field = "
           "'call_status'")}
    now = ts(c.scalar("SELECT to_json(now())").strip('"'))
    k.eq("", "calls", sorted(x[0] for x in got), sorted(cid(n) for n in (8, 15, 16, 21)))
    t2a, t2b = ts(run2["started_at"]), ts(run2["finished_at"])
    for n, final in ((15, "completed"), (16, "failed")):
        r = got.get((cid(n),))
        k.row(cid(n), r, {"in_progress_from": ts(seen[cid(n)]["first_seen_at"]),
                          "in_progress_until": ts(change[cid(n)]),
                          "final_status": final, "still_in_progress": False,
                          "assistant_id": B if n == 16 else A,
                          "call_started_at": ts(FIXED[n - 1]["call_started_at"])})
        if r:
            k.eq(cid(n), "until within pass 2", t2a <= ts(r["in_progress_until"]) <= t2b, True)
            d = ts(r["in_progress_until"]) - ts(r["in_progress_from"])
            k.eq(cid(n), "observed_duration", interval(r["observed_duration"]), d)
    for n, start in ((8, seen[cid(8)]["first_seen_at"]), (21, change.get(cid(21)))):
        r = got.get((cid(n),))
        k.row(cid(n), r, {"in_progress_from": ts(start), "in_progress_until": None,
                          "final_status": None, "still_in_progress": True})
        if r:
            d = interval(r["observed_duration"])
            k.eq(cid(n), "observed_duration > 0 and <= now() - from",
                 dt.timedelta(0) < d <= now - ts(start) + dt.timedelta(seconds=60), True)
    k.done()


def interval(v):
    """A PostgreSQL interval as JSON text ('HH:MM:SS.ffffff', maybe 'N days ...')."""
    if v is None:
        return None
    days = 0
    if "day" in v:
        dpart, v = v.split(" day", 1)
        days = int(dpart)
        v = v.split(" ", 1)[1] if " " in v else "00:00:00"
    hh, mm, ss = v.split(":")
    return dt.timedelta(days=days, hours=int(hh), minutes=int(mm), seconds=float(ss))


def check_lead_upgrades(c, run2):
    got = rows(c, "SELECT * FROM vozagent.lead_upgrades WHERE source = 'e2e'")
    k = Checker("lead_upgrades")
    byid = keyed(got, "call_id")
    # from to is_upgrade contact assistant
    exp = {
        14: ("cold", "hot", True, contact(3), A),
        2: ("warm", "cold", False, contact(2), A),
        17: (None, "warm", True, contact(2), None),
        15: (None, "hot", True, contact(1), A),       # JSON null -> hot
        10: ("hot", None, False, contact(1), A),      # key removed
    }
    k.eq("", "calls", sorted(x[0] for x in byid), sorted(cid(n) for n in exp))
    for n, (f, t, up, who, asst) in exp.items():
        r = byid.get((cid(n),))
        k.row(cid(n), r, {"from_qualification": f, "to_qualification": t, "is_upgrade": up,
                          "contact_id": who, "assistant_id": asst})
        if r:
            k.eq(cid(n), "observed_at within pass 2",
                 ts(run2["started_at"]) <= ts(r["observed_at"]) <= ts(run2["finished_at"]),
                 True)
            if r["run_id"] is not None:
                k.eq(cid(n), "run_id", r["run_id"], run2["id"])
    k.done()


def freshness(c):
    got = rows(c, "SELECT * FROM vozagent.sync_freshness WHERE source = 'e2e'")
    check(len(got) == 1, "sync_freshness: %d rows for the source, expected 1" % len(got))
    return got[0]


def last_ok(k, where, r, runs):
    """last_success_at is when the last 'ok' run finished: the spec says its
    finished_at; 007 shows sync_state.last_pass_at, stamped by the pass's last commit,
    a moment before. Either identifies that run: within it, after the run before."""
    ok = [x for x in runs if x["outcome"] == "ok"]
    prev = [x for x in runs if x["id"] < ok[-1]["id"]]
    got = ts(r.get("last_success_at")) if r.get("last_success_at") else None
    lo = ts(prev[-1]["finished_at"]) if prev else ts(ok[-1]["started_at"])
    lo = max(lo, ts(ok[-1]["started_at"]))
    k.eq(where, "last_success_at within the last ok run (%s .. %s)"
         % (ok[-1]["started_at"], ok[-1]["finished_at"]),
         got is not None and lo <= got <= ts(ok[-1]["finished_at"]), True)


def check_freshness(c, rel_start):
    k = Checker("sync_freshness")
    runs = c.sync_runs()
    r = freshness(c)
    newest = rel_start[31][1]
    last_ok(k, "after good passes", r, runs)
    k.row("after good passes", r, {"live_calls": 27, "in_progress_calls": 2,
                                   "newest_call_at": newest, "last_run_outcome": "ok",
                                   "last_error": None})
    if r.get("minutes_since") is not None:
        k.eq("after good passes", "0 <= minutes_since < 30",
             0 <= Decimal(r["minutes_since"]) < 30, True)
    else:
        k.eq("after good passes", "minutes_since", None, "a number")
    # a failed pass: the error shows, the last success stays
    c.sim.faults(queue=["400"])
    res = c.run("once")
    check(res.rc != 0, "the pass the API refused (400) exited 0")
    c.sim.faults(clear=True)
    failed = c.last_run()
    check(failed["outcome"] == "failed" and failed["error"],
          "test data: the refused pass is not a failed run with an error: %s" % failed)
    r = freshness(c)
    last_ok(k, "after a failed pass", r, runs)
    k.row("after a failed pass", r, {"last_run_outcome": "failed",
                                     "last_error": failed["error"], "live_calls": 27})
    c.expect_rc(c.run("once"), 0, "a good pass after the failed one")
    r = freshness(c)
    last_ok(k, "after a good pass again", r, c.sync_runs())
    k.row("after a good pass again", r, {"last_run_outcome": "ok", "last_error": None})
    k.done()


def check_psql_writes(c):
    """Rows changed by a person (no vozagent.run_id): the history says so with run_id
    NULL, a hard DELETE is a 'delete', and the rollup follows."""
    n0 = int(c.scalar("SELECT count(*) FROM vozagent.call_changes"))
    t0 = c.scalar("SELECT max(observed_at) FROM vozagent.call_changes")
    c.q("UPDATE vozagent.calls SET raw = raw || '{\"note\": \"by hand\"}' "
        "WHERE id = '%s'" % cid(13))
    c.q("DELETE FROM vozagent.calls WHERE id IN ('%s', '%s')" % (cid(19), cid(22)))
    got = sorted(tuple(r) for r in c.qjson(
        "SELECT coalesce(json_agg(json_build_array(call_id, op, field, new_value::text, "
        "run_id)), '[]') FROM vozagent.call_changes WHERE observed_at > '%s'" % t0))
    exp = sorted([(cid(13), "update", "note", '"by hand"', None),
                  (cid(19), "delete", None, None, None),
                  (cid(22), "delete", None, None, None)])
    n1 = int(c.scalar("SELECT count(*) FROM vozagent.call_changes"))
    check(n1 - n0 == 3 and got == exp, "history of psql writes: %d rows, expected 3:\n  %s"
          % (n1 - n0, "\n  ".join(map(str, got))))
    # the hard-deleted live call (D5, B, inbound, no status) leaves the rollup
    d5 = c.qjson("SELECT json_build_array(calls, completed, in_progress) FROM "
                 "vozagent.daily_totals WHERE source = 'e2e' AND call_date = '2026-03-31'")
    check(d5 == [5, 3, 1], "daily_totals 2026-03-31 after a hard DELETE of its call "
          "without status: %s, expected [5, 3, 1]" % d5)
    h.log("psql writes: an update and two hard deletes in the history, run_id NULL")


# ------------------------------------------------------------- the reader ----

VIEWS = ("calls_live", "calls_daily", "daily_totals", "assistant_performance", "lead_funnel",
         "contacts", "calls_hourly", "hourly_heatmap", "sync_freshness", "raw_fields",
         "call_status_durations", "lead_upgrades", "call_changes")
PRIVATE = ("sync_state", "sync_runs", "rejects", "calls", "calls_daily_rollup",
           "backfill_seen_batches", "raw_field_stats", "sync_status")
REFUSED_WRITES = [
    "INSERT INTO vozagent.call_changes (source, call_id, op) VALUES ('e2e', 'x', 'insert')",
    "UPDATE vozagent.call_changes SET field = 'x'",
    "DELETE FROM vozagent.call_changes",
    "TRUNCATE vozagent.call_changes",
    "INSERT INTO vozagent.calls (id, raw, source) VALUES ('x', '{}', 'e2e')",
    "UPDATE vozagent.calls SET deleted_at = now()",
    "DELETE FROM vozagent.calls",
    # calls_live cannot be updated: refused with 55000 before rights are looked at
    "UPDATE vozagent.calls_live SET call_status = 'failed'",
    "DELETE FROM vozagent.calls_live",
    "INSERT INTO vozagent.calls_live (id, raw, source) VALUES ('x', '{}', 'e2e')",
    "UPDATE vozagent.sync_state SET report_time_zone = 'UTC'",
    "DELETE FROM vozagent.sync_runs",
    "DELETE FROM vozagent.calls_daily_rollup",
    "UPDATE vozagent.raw_field_stats SET calls = 0",
    "DELETE FROM vozagent.rejects",
    "SELECT vozagent.prune_changes('e2e', now() + interval '1 day', 1000000)",
    "SELECT vozagent.configure_source('e2e', 'UTC', false)",
    "SELECT vozagent.rollup_add_calls('e2e')",
    "CREATE TABLE vozagent.reader_was_here (x int)",
    "CREATE VIEW vozagent.reader_view AS SELECT 1 AS x",
]


def as_role(c, role, sql):
    """(rc, stdout, stderr) of sql run by role, errors verbose (with their SQLSTATE)."""
    env = c.pg.env(c.db)
    env["PGUSER"] = role
    p = subprocess.run([c.pg.psql_bin, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
                        "-c", "\\set VERBOSITY verbose",
                        "-c", sql], env=env, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8",
                                                                              "replace")


def as_role_each(c, role, stmts, into=False):
    """Run each statement as role, in one session: [(sqlstate or "ok", message or the
    count it returned)]. Each runs in its own subtransaction (a plpgsql exception
    block), so one refusal does not stop the others; what succeeds is committed."""
    body = ", ".join("$q$%s$q$" % x for x in stmts)
    do = """DO $do$
DECLARE s text; i int := 0; n bigint;
BEGIN
    FOREACH s IN ARRAY ARRAY[%s]::text[] LOOP
        i := i + 1;
        BEGIN
            EXECUTE s %s;
            RAISE NOTICE 'R|%%|ok|%%', i, n;
        EXCEPTION WHEN others THEN
            RAISE NOTICE 'R|%%|%%|%%', i, SQLSTATE, SQLERRM;
        END;
    END LOOP;
END $do$""" % (body, "INTO n" if into else "")
    rc, out, err = as_role(c, role, do)
    check(rc == 0, "the reader's session failed: %s" % err)
    res = {}
    for line in err.splitlines():
        if "R|" in line:
            _, i, code, msg = line[line.index("R|"):].split("|", 3)
            res[int(i)] = (code, msg)
    check(sorted(res) == list(range(1, len(stmts) + 1)), "no result for some statements: "
          "%s" % err[:500])
    return [res[i + 1] for i in range(len(stmts))]


def check_reader(c):
    errors = []
    before = c.scalar("SELECT count(*) || '/' || (SELECT count(*) FROM vozagent.calls "
                      "WHERE deleted_at IS NOT NULL) FROM vozagent.call_changes")
    with h.Role(c.pg, "bi_reader") as role:
        # as docs/bi.md tells an administrator to do it
        c.q('GRANT vozagent_reader TO "%s"; ALTER ROLE "%s" SET search_path = vozagent'
            % (role.name, role.name))
        got = as_role_each(c, role.name, ["SELECT count(*) FROM %s" % v for v in VIEWS],
                           into=True)
        mine = c.qjson("SELECT json_build_array(%s)" % ", ".join(
            "(SELECT count(*) FROM vozagent.%s)" % v for v in VIEWS))
        for v, (code, n), m in zip(VIEWS, got, mine):
            if code != "ok":
                errors.append("the reader cannot SELECT %s: %s %s" % (v, code, n))
            elif Decimal(n) != m:
                errors.append("the reader sees %s rows of %s, the owner %s" % (n, v, m))
        stmts = ["SELECT * FROM vozagent.%s LIMIT 1" % t for t in PRIVATE] + REFUSED_WRITES
        for sql, (code, msg) in zip(stmts, as_role_each(c, role.name, stmts)):
            # calls_live is not an updatable view: PostgreSQL refuses writes into it
            # (55000) before it looks at rights
            ok = ("42501", "55000") if "calls_live" in sql else ("42501",)
            if code not in ok:
                errors.append("%s by the reader: expected SQLSTATE 42501, got %s %s"
                              % (sql, code, msg[:200]))
        c.q('REVOKE vozagent_reader FROM "%s"' % role.name)
        rc, out, err = as_role(c, role.name, "SELECT count(*) FROM vozagent.calls_live")
        if rc == 0 or "42501:" not in err:
            errors.append("a role no longer granted vozagent_reader still reads calls_live "
                          "(rc %s): %s" % (rc, (err or out).strip()[:200]))
    after = c.scalar("SELECT count(*) || '/' || (SELECT count(*) FROM vozagent.calls "
                     "WHERE deleted_at IS NOT NULL) FROM vozagent.call_changes")
    if after != before:
        errors.append("the reader changed data: history rows/deleted calls %s -> %s"
                      % (before, after))
    check(not errors, "%d reader check(s) failed:\n  %s" % (len(errors), "\n  ".join(errors)))
    h.log("reader: %d views read, %d tables and %d writes refused with 42501"
          % (len(VIEWS), len(PRIVATE), len(REFUSED_WRITES)))


if __name__ == "__main__":
    h.main([("BI views on hand-made calls, and the reader role", scenario)])
