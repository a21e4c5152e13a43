#!/usr/bin/env python3
"""Issue 4: bad records and hostile strings.

- The simulator's bad_records fault (a record without id, one with a numeric id, a
  duplicate id in the page): each goes to vozagent.rejects (source, run_id,
  list_offset, reason, raw as received, rejected_at), sync_runs.rejected counts them,
  the rest of the page is mirrored exactly; reading the same page again stores no
  second copy of a reject (the row's times_seen, run_id and last_seen_at follow).
- The nul fault (NUL in keys and values, and in an id; a 1 MiB string; 200 levels
  of nesting): NUL becomes U+FFFD (one warning per record), the 1 MiB string is
  stored exactly, the too-deep record is rejected; the real records are mirrored.
- Records given verbatim (/_control/add raw_records), all in one page: no id, a
  numeric / null / empty id, a repeated id, a number beyond numeric (1e999999) in a
  field and in duration_seconds, nesting of 127 and 200 levels -> rejected; nesting
  of 100 and 126 levels, a 1 MiB value in a typed column, escapes and a surrogate
  pair -> stored faithfully; NUL and every kind of lone surrogate (low, high at the
  end, high before a character, high before another \\u escape, high before a pair)
  -> U+FFFD, one warning per record, everything else in the record kept as sent.
The expected value is computed independently: the record parsed by Python's json
(which keeps lone surrogates as code points), then every NUL and surrogate code
point replaced by U+FFFD."""

import importlib.util
import json
from decimal import Decimal

import faultlib as fl
import harness as h
from harness import check

PAGE = 25


def fffd(v):
    """The documented rule: NUL and lone surrogates (code points D800-DFFF left after
    pairing) become U+FFFD, in keys and values."""
    if isinstance(v, str):
        return "".join("\ufffd" if c == "\0" or 0xD800 <= ord(c) <= 0xDFFF else c for c in v)
    if isinstance(v, list):
        return [fffd(x) for x in v]
    if isinstance(v, dict):
        return {fffd(k): fffd(x) for k, x in v.items()}
    return v


def needs_fffd(v):
    return fffd(v) != v


def loads(text):
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def nest(depth):
    """JSON text of `depth` nested containers (objects and arrays in turn)."""
    s = '"bottom"'
    for i in range(depth):
        s = "[" + s + "]" if i % 2 else '{"l%d":%s}' % (i, s)
    return s


def sim_module():
    spec = importlib.util.spec_from_file_location("vozagent_sim", h.SIM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_row(c, rid, expected, soft, what):
    """The row with id `rid` holds `expected` (a parsed record) in raw and in the typed
    text columns."""
    rows = [x for x in c.mirror_rows() if x["id"] == rid]
    soft.check(len(rows) == 1, "%s: no row with id %r in vozagent.calls" % (what, rid))
    if not rows:
        return
    row = rows[0]
    d = h.json_diff(expected, row["raw"])
    soft.check(d is None, "%s: raw differs from the expected value: %s" % (what, d))
    for col in h.TEXT_COLS:
        exp = expected.get(col)
        exp = exp if isinstance(exp, str) else None
        soft.check(row[col] == exp, "%s: column %s = %s, expected %s"
                   % (what, col, h.short(row[col], 60), h.short(exp, 60)))


def injected_pages():
    # 20 calls: one short page, so the faults' extra records stay within limit (a page
    # with more calls than limit is refused whole)
    with h.Case("bad_records_faults", seed=451, calls=20, page_size=PAGE) as c:
        soft = fl.Soft()
        calls = c.sim.calls()

        # bad_records on the first page: 3 rejects, the page's 20 real calls mirrored
        for rnd in (1, 2):
            fl.reset_mirror(c) if rnd == 1 else (c.sim.clear_requests(), fl.clear_faults(c.sim))
            fl.faults(c.sim, queue=["bad_records"])
            r = c.run("backfill")
            c.expect_rc(r, 0, "backfill with bad_records (round %d)" % rnd)
            c.assert_exact("after bad_records (round %d)" % rnd)
            run = c.sync_runs()[-1]
            rej = fl.rejects(c)
            h.log("round %d: sync_runs.rejected %s, vozagent.rejects holds %d rows"
                  % (rnd, run["rejected"], len(rej)))
            check(run["rejected"] == 3, "round %d: sync_runs.rejected = %s, expected 3 "
                  "(no id, numeric id, duplicate id)" % (rnd, run["rejected"]))
            check(len(rej) == 3, "round %d: vozagent.rejects holds %d rows, expected 3%s"
                  % (rnd, len(rej), " (the same raw stored twice?)" if rnd == 2 else ""))
        # one row per record, updated by the second pass that read it again
        by_reason = sorted(rej, key=lambda x: x["reason"])
        for x in rej:
            check(x["source"] == c.source and x["run_id"] == run["id"] and
                  x["list_offset"] == 0 and x["rejected_at"] and x["times_seen"] == 2 and
                  x["last_seen_at"] >= x["rejected_at"],
                  "reject row: source %r run_id %s list_offset %s rejected_at %s times_seen %s "
                  "last_seen_at %s (expected %r, %s, 0, set, 2, not before rejected_at)"
                  % (x["source"], x["run_id"], x["list_offset"], x["rejected_at"],
                     x["times_seen"], x["last_seen_at"], c.source, run["id"]))
        raws = [loads(x["raw"]) for x in rej]
        check(any(isinstance(x, dict) and "id" not in x and x.get("note") == "this record has "
                  "no id" for x in raws), "the record without id is not in rejects as sent")
        check(any(isinstance(x, dict) and x.get("id") == 12345 for x in raws),
              "the record with a numeric id is not in rejects as sent")
        dup = [x for x in rej if "repeat" in x["reason"]]
        check(dup and h.json_diff(calls[0], loads(dup[0]["raw"])) is None,
              "the duplicate (a copy of the page's first call %s) is not in rejects as sent: %s"
              % (calls[0]["id"], [x["reason"] for x in by_reason]))
        for x in by_reason:
            h.log("reject: offset %s, %s: %s" % (x["list_offset"], x["reason"],
                                                 h.short(x["raw"], 70)))

        # nul: NUL in keys, values and an id; a 1 MiB string; 200 levels of nesting
        fl.reset_mirror(c)
        fl.faults(c.sim, queue=[{"kind": "nul", "nul_in_id": True}])
        r = c.run("backfill")
        c.expect_rc(r, 0, "backfill with the nul fault")
        hostile = {"call-00000000-0000-0000-0a0%d" % i for i in range(1, 5)}
        rows = [x for x in c.mirror_rows() if not any(x["id"].startswith(i[:-1]) for i in hostile)]
        d = h.mirror_diff(calls, rows, c.source)
        check(not d, "the real calls differ after the nul fault:\n  " + "\n  ".join(d))
        started = [x for x in c.mirror_rows() if x["id"].endswith("0a01")]
        check(started, "call ...0a01 (NUL in keys and values) was not stored")
        texts = sim_module().hostile_records(started[0]["raw"]["call_started_at"],
                                             1 << 20, 200, True)
        expect = [loads(t) for t in texts]
        check_row(c, "call-00000000-0000-0000-0a01", fffd(expect[0]), soft,
                  "NUL in keys and values")
        check_row(c, "call-00000000-0000-0000-0a02", expect[1], soft, "a 1 MiB string")
        check_row(c, fffd(expect[3]["id"]), fffd(expect[3]), soft, "NUL in the id")
        long_db = c.scalar("select length(raw->>'long_text') from vozagent.calls "
                           "where id = 'call-00000000-0000-0000-0a02'")
        h.log("1 MiB string: %s characters stored, %d sent" % (long_db,
                                                              len(expect[1]["long_text"])))
        rej = fl.rejects(c)
        deep = [x for x in rej if "0a03" in x["raw"]]
        soft.check(len(deep) == 1 and "deeper" in deep[0]["reason"],
                   "the record nested 200 levels deep is not rejected: %s"
                   % [x["reason"] for x in rej])
        run = c.sync_runs()[-1]
        soft.check(run["warnings"] == 2 and run["rejected"] == 1,
                   "nul fault: sync_runs.warnings %s (expected 2: NUL in a record, NUL in an "
                   "id), rejected %s (expected 1: too deep)" % (run["warnings"], run["rejected"]))
        h.log("nul fault: warnings %s, rejected %s: %s" % (run["warnings"], run["rejected"],
                                                          [x["reason"] for x in rej]))
        fl.assert_secret_free(c, what="bad records (faults)")
        soft.done()


def special_records(started):
    """(label, JSON text, expectation) with expectation 'stored', 'fffd' or 'rejected'."""
    s = started
    long_val = ("1 MiB: é 中 🎉 \\\"q\\\" \\\\ \\n\\t\\u0001 " * 40000)[:1 << 20]
    long_val = long_val[:len(long_val) - len(long_val) % 2]
    out = [
        ("escapes and a surrogate pair",
         '{"id":"call-x-pair","call_started_at":"%s","y":"\\ud83d\\ude00 \\u00e9 \\" \\/ \\t"}'
         % s, "stored"),
        ("a 1 MiB value in call_intent",
         '{"id":"call-x-long","call_started_at":"%s","call_intent":"%s"}' % (s, long_val),
         "stored"),
        ("100 levels of nesting",
         '{"id":"call-x-deep100","call_started_at":"%s","deep":%s}' % (s, nest(100)), "stored"),
        ("126 levels of nesting",
         '{"id":"call-x-deep126","call_started_at":"%s","deep":%s}' % (s, nest(126)), "stored"),
        ("NUL in typed columns, keys and values",
         '{"id":"call-x-nul","call_started_at":"%s","contact_id":"a\\u0000b",'
         '"call_intent":"\\u0000","k\\u0000":"v\\u0000","n":["\\u0000",{"\\u0000":1}]}' % s,
         "fffd"),
        ("a lone low surrogate", '{"id":"call-x-lo","call_started_at":"%s",'
         '"contact_id":"a\\udc00b"}' % s, "fffd"),
        ("a lone high surrogate at the end", '{"id":"call-x-hi-end","call_started_at":"%s",'
         '"x":"a\\ud800"}' % s, "fffd"),
        ("a lone high surrogate before a character",
         '{"id":"call-x-hi-char","call_started_at":"%s","x":"a\\ud800b"}' % s, "fffd"),
        ("a lone high surrogate before \\u0041",
         '{"id":"call-x-hi-esc","call_started_at":"%s","x":"a\\ud800\\u0041"}' % s, "fffd"),
        ("a lone high surrogate before a pair",
         '{"id":"call-x-hi-pair","call_started_at":"%s","x":"\\ud800\\ud83d\\ude00"}' % s,
         "fffd"),
        ("no id", '{"call_started_at":"%s","note":"no id at all"}' % s, "rejected"),
        ("a numeric id", '{"id":4711,"call_started_at":"%s"}' % s, "rejected"),
        ("a null id", '{"id":null,"call_started_at":"%s"}' % s, "rejected"),
        ("an empty id", '{"id":"","call_started_at":"%s"}' % s, "rejected"),
        ("1e999999 in an extra field",
         '{"id":"call-x-bignum","call_started_at":"%s","x":1e999999}' % s, "rejected"),
        ("1e999999 as duration_seconds",
         '{"id":"call-x-bigdur","call_started_at":"%s","duration_seconds":1e999999}' % s,
         "rejected"),
        ("127 levels of nesting",
         '{"id":"call-x-deep127","call_started_at":"%s","deep":%s}' % (s, nest(127)), "rejected"),
        ("200 levels of nesting",
         '{"id":"call-x-deep200","call_started_at":"%s","deep":%s}' % (s, nest(200)), "rejected"),
        ("an id repeated in the page (copy 1)",
         '{"id":"call-x-dup","call_started_at":"%s","copy":1}' % s, "dup"),
        ("an id repeated in the page (copy 2)",
         '{"id":"call-x-dup","call_started_at":"%s","copy":2}' % s, "dup"),
    ]
    return out


def add_raw(c, texts):
    """/_control/add raw_records, one at a time. The simulator echoes what it added as
    UTF-8, which a lone surrogate cannot be: it answers 400 after adding the record.
    The count tells whether the record is there."""
    for t in texts:
        before = c.sim.state()["count"]
        try:
            c.sim.add(raw_records=[t])
        except h.TestFailure as e:
            if "surrogates not allowed" not in str(e):
                raise
        check(c.sim.state()["count"] == before + 1, "the simulator did not add %s"
              % h.short(t, 80))


def explicit_records(order):
    with h.Case("bad_records_raw", order=order, seed=452, calls=30, page_size=100) as c:
        soft = fl.Soft()
        started = c.sim.state()["newest_started_at"]
        specials = special_records(started)
        add_raw(c, [t for _, t, _ in specials])
        listed = c.sim.calls()
        check(len(listed) <= 100, "test set-up: more than one page")
        ids = {loads(t).get("id") for _, t, _ in specials}
        plain = [x for x in listed if x.get("id") not in ids]

        for rnd in (1, 2):
            r = c.run("backfill")
            c.expect_rc(r, 0, "backfill with bad records (round %d)" % rnd)
            run = c.sync_runs()[-1]
            rej = fl.rejects(c)
            if rnd == 1:
                first = (run, rej)
            h.log("round %d: warnings %s, rejected %s, vozagent.rejects %d rows"
                  % (rnd, run["warnings"], run["rejected"], len(rej)))

        run, rej = first
        rows = c.mirror_rows()
        d = h.mirror_diff(plain, [x for x in rows if x["id"] not in ids], c.source)
        check(not d, "the rest of the page differs:\n  " + "\n  ".join(d))
        h.log("the %d ordinary calls of the page are mirrored exactly" % len(plain))

        # the duplicate pair: the first listed is stored, the second rejected
        dups = [x for x in listed if x.get("id") == "call-x-dup"]
        n_rej = sum(1 for _, _, e in specials if e == "rejected") + 1
        n_fffd = sum(1 for _, _, e in specials if e == "fffd")
        for label, text, exp in specials:
            obj = loads(text)
            if exp == "stored":
                check_row(c, obj["id"], obj, soft, label)
                h.log("stored faithfully: %s" % label)
            elif exp == "fffd":
                check(needs_fffd(obj), "test set-up: %s has nothing to replace" % label)
                check_row(c, fffd(obj["id"]), fffd(obj), soft, label)
                got = [x for x in rows if x["id"] == obj["id"]]
                h.log("U+FFFD rule, %s: stored %s" % (
                    label, json.dumps(got[0]["raw"].get("x", got[0]["raw"].get("contact_id")))
                    if got else "nothing"))
            elif exp == "rejected":
                mine = [x for x in rej if h.json_diff(obj, _try_loads(x["raw"])) is None or
                        (isinstance(obj.get("id"), str) and obj["id"] != "" and
                         '"id":"%s"' % obj["id"] in x["raw"] and "deeper" in x["reason"])]
                soft.check(len(mine) == 1, "%s: %d matching row(s) in vozagent.rejects"
                           % (label, len(mine)))
                soft.check(not (isinstance(obj.get("id"), str) and
                                any(x["id"] == obj["id"] for x in rows)),
                           "%s: the record was mirrored" % label)
                if mine:
                    h.log("rejected: %s: %s" % (label, mine[0]["reason"]))
        got = [x for x in rows if x["id"] == "call-x-dup"]
        check(len(got) == 1 and h.json_diff(dups[0], got[0]["raw"]) is None,
              "the repeated id: the mirror should hold the first listed copy %s, holds %s"
              % (dups[0], got and got[0]["raw"]))
        second = [x for x in rej if "repeat" in x["reason"]]
        soft.check(len(second) == 1 and h.json_diff(dups[1], loads(second[0]["raw"])) is None,
                   "the second copy of the repeated id is not in rejects")
        soft.check(all(x["list_offset"] == 0 and x["run_id"] == run["id"] and
                       x["source"] == c.source for x in rej),
                   "rejects rows: %s" % [(x["list_offset"], x["run_id"], x["source"])
                                         for x in rej])
        soft.check(run["rejected"] == n_rej and len(rej) == n_rej,
                   "sync_runs.rejected = %s, vozagent.rejects %d rows, expected %d"
                   % (run["rejected"], len(rej), n_rej))
        soft.check(run["warnings"] == n_fffd, "sync_runs.warnings = %s, expected %d (one per "
                   "record with a NUL or lone surrogate)" % (run["warnings"], n_fffd))
        run2 = c.sync_runs()[-1]
        soft.check(run2["rejected"] == n_rej and len(fl.rejects(c)) == n_rej,
                   "second backfill: sync_runs.rejected %s, vozagent.rejects %d rows (the same "
                   "raw must not be stored twice)" % (run2["rejected"], len(fl.rejects(c))))
        fl.assert_secret_free(c, what="bad records (explicit)")
        soft.done()


def _try_loads(text):
    try:
        return loads(text)
    except ValueError:
        return None


if __name__ == "__main__":
    h.main([("bad_records and nul faults", injected_pages)] +
           h.both_orders(explicit_records, "explicit bad records"))
