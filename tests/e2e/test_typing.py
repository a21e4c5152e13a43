#!/usr/bin/env python3
"""Typing: records with a field of the wrong type (a string or object for the
duration, impossible timestamps, a number for a timestamp or a boolean) are mirrored
with that typed column NULL and the value kept in raw, counted in sync_runs.warnings,
and the pass succeeds; missing and null optional fields, unknown nested fields of
every JSON type, numbers beyond a double, unicode and escapes are mirrored exactly
and are not warnings."""

import datetime as dt
from decimal import Decimal

import harness as h
from harness import check

# Each has exactly one field that cannot be typed: one warning each.
BAD = [
    {"duration_seconds": "abc"},
    {"duration_seconds": "12.5s"},
    {"duration_seconds": True},
    {"duration_seconds": {"value": 12}},
    {"call_started_at": "not a timestamp"},
    {"call_started_at": "2024-02-30T10:00:00Z"},
    {"call_ended_at": "2024-01-15T25:61:00Z"},
    {"call_ended_at": 1705314600},
    {"appointment_booked": "yes"},
    {"appointment_booked": 1},
]
BAD_LATER = [
    {"duration_seconds": "n/a"},
    {"call_started_at": "yesterday"},
    {"call_ended_at": "2024-13-01T00:00:00Z"},
]


def nest(depth):
    v = [Decimal("1"), "leaf"]
    for i in range(depth):
        v = {"level%d" % (depth - i): v}
    return v


ODD = [
    # only the id and the start
    {"__only__": ["id", "call_started_at"]},
    # every documented optional field null
    {"contact_id": None, "assistant_id": None, "call_type": None, "call_status": None,
     "duration_seconds": None, "call_ended_at": None, "appointment_booked": None,
     "lead_qualification": None, "call_intent": None},
    # unknown fields of every JSON type, deep and odd
    {"x_deep": nest(40), "x_mixed": [1, "two", Decimal("3.5"), None, True, False, {"k": []}, [[]]],
     "x_bigint": 123456789012345678901234567890, "x_neg": Decimal("-0.000001"),
     "x_huge": Decimal("1.5E+300"), "x_beyond_double": Decimal("1e400"),
     "x_empty_obj": {}, "x_empty_arr": [], "x_null": None, "x_true": True,
     "ключ": "значение", "": "empty key", "key \"quoted\" \\ back": "v"},
    # unicode and escapes in typed text columns
    {"contact_id": "cöntact-✓-😀", "assistant_id": "助手-01",
     "call_intent": "quote \" backslash \\ newline \n tab \t cr \r ls \u2028 bell \u0007"},
    # numbers and timestamps in unusual but valid forms
    {"duration_seconds": 0, "call_ended_at": None, "call_status": "in-progress"},
    {"duration_seconds": Decimal("1E+2")},
    {"duration_seconds": Decimal("0.000001")},
    {"duration_seconds": Decimal("42.000"), "call_ended_at": "2024-06-01T12:00:00.5+05:30"},
    {"duration_seconds": Decimal("180.123456789012345678901234567890"),
     "call_ended_at": "2024-06-01T12:00:00-03:00"},
]


class Maker:
    def __init__(self, c):
        self.c, self.n = c, 0
        newest = h.parse_instant(c.sim.state()["newest_started_at"])
        self.t = newest

    def record(self, override):
        self.n += 1
        self.t += dt.timedelta(minutes=7)
        start = self.t.strftime("%Y-%m-%dT%H:%M:%SZ")
        rec = {"id": "call-feed%04d-7e57-a11c-%04d" % (self.n, self.n),
               "contact_id": "c0ffee00-0000-4000-8000-%04d" % self.n,
               "assistant_id": "a55157a0-0000-4000", "call_type": "inbound",
               "call_status": "completed", "duration_seconds": 61,
               "call_started_at": start,
               "call_ended_at": (self.t + dt.timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "appointment_booked": False, "lead_qualification": "warm",
               "call_intent": "support"}
        if "__only__" in override:
            return {k: rec[k] for k in override["__only__"]}
        rec.update(override)
        return rec

    def raw_text(self):
        """A record as exact JSON text with \\u escapes, surrogate pairs and \\/."""
        self.n += 1
        self.t += dt.timedelta(minutes=7)
        return ('{"id":"call-feed%04d-7e57-a11c-%04d","contact_id":"\\u00e9\\u4e2d\\ud83d\\ude00",'
                '"call_intent":"slash \\/ tab\\t nl\\n \\"q\\" \\\\","call_type":"outbound",'
                '"call_status":"completed","duration_seconds":1.50,'
                '"call_started_at":"%s","call_ended_at":null,"x":[1.0e-2,-0,1E2]}'
                % (self.n, self.n, self.t.strftime("%Y-%m-%dT%H:%M:%SZ")))


def scenario(order):
    with h.Case("typing", order=order, seed=81, calls=40, page_size=25) as c:
        m = Maker(c)
        c.sim.add(records=[m.record(o) for o in BAD] + [m.record(o) for o in ODD])
        c.sim.add(raw_records=[m.raw_text()])
        r = c.run("backfill")
        c.expect_rc(r, 0)
        c.assert_exact("after backfill")
        run = c.sync_runs()[-1]
        check(run["outcome"] == "ok", "backfill: sync_runs %s" % run)
        check(run["warnings"] == len(BAD), "sync_runs.warnings = %s, expected %d (one per "
              "record with an untypeable field)" % (run["warnings"], len(BAD)))
        check(run["rejected"] == 0, "sync_runs.rejected = %s" % run["rejected"])
        check(run["inserted"] == 40 + len(BAD) + len(ODD) + 1,
              "sync_runs.inserted = %s" % run["inserted"])

        # The same kinds of records arriving later, picked up by an incremental pass.
        c.sim.add(records=[m.record(o) for o in BAD_LATER + ODD[:2]])
        r = c.run("once")
        c.expect_rc(r, 0)
        c.assert_exact("after once")
        run = c.sync_runs()[-1]
        check(run["outcome"] == "ok" and run["warnings"] >= len(BAD_LATER),
              "once: outcome %s, warnings %s (expected >= %d)"
              % (run["outcome"], run["warnings"], len(BAD_LATER)))


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "typing"))
