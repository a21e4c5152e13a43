#!/usr/bin/env python3
"""Cheap writes: a full resync of an unchanged mirror writes no row of vozagent.calls.

unchanged resync: after a first `backfill`, a second one over the unchanged API leaves every
  row of vozagent.calls as it was, down to its tuple header: pg_stat_user_tables counts no
  insert, update or delete, and no row's xmin, xmax or ctid moved (a merge that locks the
  rows it compares writes their xmax, and a backfill then dirties the whole table).
changed and deleted: then one call edited and one deleted in the API: the next `backfill`
  updates the edited row and marks the deleted one, and writes nothing else.
A batch holding the same call twice and rejects listed with an id are covered by
test_bad_records and test_reconcile; this one is about what a commit writes.

E2E_SEED=N replays a seed, E2E_ORDER picks one order."""

import random

import harness as h
from harness import check

N, PAGE = 500, 40


def table_stats(c):
    """Rows inserted, updated and deleted in vozagent.calls, as the statistics count them.
    The daemon's backend flushes its counts when it exits: wait until it has."""
    c.wait_for("the daemon's session to end", lambda: c.scalar(
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and application_name = 'vozagent-sync'") == "0", timeout=20, interval=0.1)
    return c.qjson("select pg_stat_force_next_flush(); select row_to_json(s) from "
                   "(select n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables "
                   "where relid = 'vozagent.calls'::regclass) s")


def tuple_headers(c):
    """id -> 'xmin xmax ctid' of every row: equal iff the row's tuple was not written."""
    return c.qjson("select coalesce(json_object_agg(id, xmin::text || ' ' || xmax::text || ' ' "
                   "|| ctid::text), '{}') from vozagent.calls")


def moved(before, after):
    return sorted(i for i in set(before) | set(after) if before.get(i) != after.get(i))


def scenario(order, seed):
    rng = random.Random(seed)
    with h.Case("cheap_writes", order=order, seed=seed, calls=0, page_size=PAGE) as c:
        c.sim.reset(seed=seed, calls=N, in_progress_recent=0, in_progress_stuck=0)
        c.expect_rc(c.run("backfill"), 0, "first backfill")
        c.assert_exact("after the first backfill")
        stats0, heads0 = table_stats(c), tuple_headers(c)
        check(len(heads0) == N, "%d rows after the first backfill, expected %d"
              % (len(heads0), N))

        c.expect_rc(c.run("backfill"), 0, "resync of an unchanged mirror")
        c.assert_exact("after the unchanged resync")
        stats1, heads1 = table_stats(c), tuple_headers(c)
        check(stats1 == stats0, "the unchanged resync wrote rows of vozagent.calls: "
              "statistics %s, then %s" % (stats0, stats1))
        m = moved(heads0, heads1)
        check(not m, "the unchanged resync wrote the tuple header of %d of %d rows, e.g. "
              "%s: %s -> %s" % (len(m), N, m[:1], heads0.get(m[0]) if m else None,
                                heads1.get(m[0]) if m else None))
        run = c.last_run()
        check((run["inserted"], run["updated"], run["marked_deleted"]) == (0, 0, 0),
              "the unchanged resync counted changes: %s" % run)

        # one call edited, one deleted: only their rows are written
        ids = sorted(heads1)
        edited, gone = rng.sample(ids, 2)
        c.sim.update(ids=[edited], set={"call_intent": "changed by the test %d" % seed},
                     unset=[])
        c.sim.delete(ids=[gone])
        c.expect_rc(c.run("backfill"), 0, "backfill after an edit and a deletion")
        c.assert_exact_but_deleted("after the edit and the deletion", [gone])
        stats2, heads2 = table_stats(c), tuple_headers(c)
        m = moved(heads1, heads2)
        check(m == sorted([edited, gone]), "rows written by the backfill: %s, expected the "
              "edited %s and the deleted %s" % (m[:5], edited, gone))
        check(stats2["n_tup_ins"] == stats1["n_tup_ins"] and stats2["n_tup_del"] ==
              stats1["n_tup_del"] and stats2["n_tup_upd"] == stats1["n_tup_upd"] + 2,
              "statistics %s, then %s: expected exactly 2 rows updated" % (stats1, stats2))
        row = {r["id"]: r for r in c.mirror_rows()}
        check(row[edited]["call_intent"] == "changed by the test %d" % seed,
              "the edited call was not updated: %s" % row[edited]["call_intent"])
        check(row[gone]["deleted_at"] is not None, "the deleted call was not marked")
        run = c.last_run()
        check((run["inserted"], run["updated"], run["marked_deleted"]) == (0, 1, 1),
              "backfill counted %s, expected 0 inserted, 1 updated, 1 marked" % run)


# The staging table as the daemon creates it (src/store.c), without ON COMMIT DELETE ROWS:
# psql -c runs the whole script in one transaction anyway.
STAGE = ("create temp table calls_stage (seq integer not null, id text not null, "
         "contact_id text, assistant_id text, call_type text, call_status text, "
         "duration_seconds numeric, call_started_at timestamptz, call_ended_at timestamptz, "
         "appointment_booked boolean, lead_qualification text, call_intent text, "
         "raw jsonb not null);")


def merge_batch(c, staged, rejects, gen):
    """Runs vozagent.merge_batch on staged [(seq, id, raw)] and rejects [(offset, position,
    id, reason, raw)] in one session; returns its (inserted, updated)."""
    def arr(vals, cast):
        return "array[%s]::%s[]" % (", ".join("null" if v is None else "'%s'" % v
                                               for v in vals), cast)
    values = ", ".join("(%d, '%s', '%s')" % (seq, i, raw) for seq, i, raw in staged)
    cols = list(zip(*rejects)) if rejects else [(), (), (), (), ()]
    sql = (STAGE + ("insert into calls_stage (seq, id, raw) values %s;" % values
                    if staged else "") +
           "select row_to_json(m) from vozagent.merge_batch('e2e', 7, %d, %s, %s, %s, %s, %s) m"
           % (gen, arr(cols[0], "bigint"), arr(cols[1], "bigint"), arr(cols[2], "text"),
              arr(cols[3], "text"), arr(cols[4], "text")))
    r = c.qjson(sql)
    return r["inserted"], r["updated"]


def batch_twice():
    """A batch that holds a call twice merges its later reading, and a record rejected
    twice in one batch is one reject row, as read last; both count as seen."""
    with h.Case("cheap_writes_twice", calls=0) as c:
        c.expect_rc(c.run("migrate"), 0, "migrate")
        got = merge_batch(c, [(0, "a", '{"id": "a", "v": 1}'), (1, "b", '{"id": "b"}'),
                              (2, "a", '{"id": "a", "v": 2}')],
                          [(0, 3, "r", "first", "{1"), (40, 41, "r", "second", "{2"),
                           (40, 42, None, "no id", "[3")], 5)
        check(got == (2, 0), "merge of a batch holding a call twice: %s, expected 2 inserted"
              % (got,))
        raw = c.scalar("select raw->>'v' from vozagent.calls where id = 'a'")
        check(raw == "2", "a call staged twice kept reading %s, not the later one (2)" % raw)
        rej = c.qjson("select json_agg(json_build_array(record_id, list_offset, list_position,"
                      " reason, raw) order by list_position) from vozagent.rejects")
        check(rej == [["r", 40, 41, "second", "{2"], [None, 40, 42, "no id", "[3"]],
              "rejects of the batch: %s" % rej)
        seen = c.scalar("select string_agg(id, ',' order by id) from "
                        "(select unnest(ids) as id from vozagent.backfill_seen_batches "
                        "where gen = 5) s")
        check(seen == "a,a,b,r,r", "ids the batch saw: %s" % seen)
        unseen = c.qjson("select row_to_json(u) from vozagent.backfill_unseen('e2e', 5) u")
        check(unseen == {"unseen": 0, "live": 2}, "backfill_unseen: %s" % unseen)

        # the same again, unchanged: nothing merged; a later generation drops the older set
        got = merge_batch(c, [(0, "a", '{"id": "a", "v": 1}'), (1, "a", '{"v": 2, "id": "a"}'),
                              (2, "b", '{"id": "b"}')], [], 6)
        check(got == (0, 0), "merge of an unchanged batch: %s, expected nothing" % (got,))
        gens = c.scalar("select string_agg(distinct gen::text, ',') "
                        "from vozagent.backfill_seen_batches")
        check(gens == "6", "seen sets after generation 6 wrote: generations %s" % gens)
        marked = c.scalar("select vozagent.finish_backfill('e2e', 6)")
        check(marked == "0", "finish_backfill marked %s calls of 2 seen" % marked)
        left = c.scalar("select count(*) from vozagent.backfill_seen_batches")
        check(left == "0", "finish_backfill left %s seen rows" % left)


if __name__ == "__main__":
    h.main(h.property_orders(scenario, "cheap writes", 8801) +
           [("batch holding a call twice", batch_twice)])
