#!/usr/bin/env python3
"""Bounded growth: what the daemon keeps stays bounded, and status stays cheap.

- retention: sync_runs rows finished before history_retention, and rejects not seen
  since then, are pruned by `once` (the source's last run, runs that just ended and
  other sources' rows stay); with history_retention forever or 0 nothing is pruned.
- rejects: a record without a string id whose content changes on every pass (the
  simulator's bad_records fault with a different tag each time) is one row of
  vozagent.rejects, keyed by its list position, with times_seen = the number of
  passes; the same for a record with a numeric id and for a repeated id.
- status counters (both orders): after a backfill, then passes over a list that
  changes (new, finished, edited, deleted calls), then writes made by hand with psql
  (a call moved to another source, deleted, a new source, TRUNCATE), the view's
  live/deleted/in-progress counts and oldest in-progress start equal a count over
  vozagent.calls; a sync_state row the triggers created (cursor NULL) does not stop
  the cursor's compare-and-set; EXPLAIN of the view reads vozagent.calls only through
  the small index of unfinished calls.
- migration 003 -> 004: a database built by hand with sql/001..003 and filled keeps
  its rejects (copies of one id collapsed, times_seen = copies) and gets counters
  equal to its calls."""

import json
import os

import faultlib as fl
import harness as h
from harness import check

PAGE = 25
CALLS = 20  # one short page: room for the bad_records fault's 3 extra records
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def runs_of(c, source):
    return c.qjson("select coalesce(json_agg(r order by r.id), '[]') from vozagent.sync_runs r "
                   "where source = '%s'" % source)


def retention():
    with h.Case("retention", seed=11, calls=40, page_size=PAGE) as c:
        c.expect_rc(c.run("migrate"), 0)
        src, other = c.source, c.source + "_other"
        # ids in insertion order: the last old run of `other` is that source's latest
        c.q("""
            insert into vozagent.sync_runs (source, mode, started_at, finished_at, outcome, error)
            select '%(s)s', 'incremental', now() - interval '100 days' + n * interval '1 min',
                   now() - interval '100 days' + n * interval '1 min' + interval '5 s',
                   case when n = 3 then 'failed' else 'ok' end,
                   case when n = 3 then 'old failure' end
              from generate_series(1, 4) n;
            insert into vozagent.sync_runs (source, mode, started_at, outcome)
            values ('%(s)s', 'backfill', now() - interval '99 days', 'running');
            insert into vozagent.sync_runs (source, mode, started_at, finished_at, outcome)
            values ('%(s)s', 'incremental', now() - interval '10 days',
                    now() - interval '10 days', 'ok'),
                   ('%(o)s', 'incremental', now() - interval '200 days',
                    now() - interval '200 days', 'ok'),
                   ('%(o)s', 'incremental', now() - interval '150 days',
                    now() - interval '150 days', 'ok');
            insert into vozagent.rejects (source, reason, raw, record_id, rejected_at, last_seen_at)
            values ('%(s)s', 'old', '{"id": "old"}', 'old', now() - interval '300 days',
                    now() - interval '100 days'),
                   ('%(s)s', 'recent', '{"id": "recent"}', 'recent',
                    now() - interval '300 days', now() - interval '5 days'),
                   ('%(o)s', 'other', '{"id": "other"}', 'other', now() - interval '300 days',
                    now() - interval '100 days');
            """ % {"s": src, "o": other})
        before = runs_of(c, src)
        check(len(before) == 6, "set-up: %d runs" % len(before))
        old_ids = [r["id"] for r in before[:4]]
        stale_running, recent = before[4]["id"], before[5]["id"]
        others = [r["id"] for r in runs_of(c, other)]
        nrej = int(c.scalar("select count(*) from vozagent.rejects"))

        for value in ("forever", "0"):
            r = c.run("once", env={"VOZAGENT_HISTORY_RETENTION": value})
            c.expect_rc(r, 0, "once with history_retention = %s" % value)
            ids = [x["id"] for x in runs_of(c, src)]
            check(all(i in ids for i in old_ids + [stale_running, recent]),
                  "history_retention = %s pruned runs: left %s of %s" % (value, ids, old_ids))
            check(int(c.scalar("select count(*) from vozagent.rejects")) == nrej,
                  "history_retention = %s pruned rejects" % value)
        check(runs_of(c, src)[4]["outcome"] == "interrupted",
              "the run left 'running' 99 days ago was not closed as interrupted")

        r = c.run("once", env={"VOZAGENT_HISTORY_RETENTION": "30d"})
        c.expect_rc(r, 0, "once with history_retention = 30d")
        ids = [x["id"] for x in runs_of(c, src)]
        h.log("runs of %s after pruning: %s (old ones were %s)" % (src, ids, old_ids))
        check(not any(i in ids for i in old_ids),
              "runs finished 100 days ago survived history_retention = 30d: %s" % ids)
        check(stale_running in ids, "the run closed as interrupted just now (started 99 "
              "days ago) was pruned: it finished today")
        check(recent in ids, "the run of 10 days ago was pruned with history_retention = 30d")
        check(len(ids) == 2 + 3, "expected the 2 recent runs and the 3 of the once passes, "
                                 "got %s" % ids)
        check([x["id"] for x in runs_of(c, other)] == others,
              "pruning source %s touched the runs of source %s" % (src, other))
        rej = {x["record_id"]: x for x in fl.rejects(c)}
        check(set(rej) == {"recent", "other"},
              "rejects after pruning: %s, expected recent (seen 5 days ago) and other "
              "(another source's)" % sorted(rej))
        check("history_retention" in r.err and "removed 4 old runs and 1 old rejects" in r.err,
              "once did not log what it pruned:\n%s" % h.tail(r.err))

        # the latest run of a source stays, however old
        r = c.run("once", env={"VOZAGENT_HISTORY_RETENTION": "30d", "VOZAGENT_SOURCE": other})
        c.expect_rc(r, 0, "once for source %s" % other)
        ids = [x["id"] for x in runs_of(c, other)]
        check(others[0] not in ids and others[1] in ids,
              "source %s: runs %s before, %s after pruning: expected only the first gone "
              "(the second was the latest when pruning ran)" % (other, others, ids))

        # a plain number is seconds: refused, with the key named
        r = c.run("once", env={"VOZAGENT_HISTORY_RETENTION": "90"})
        c.expect_rc(r, 78, "history_retention = 90 (seconds)")
        check("history_retention" in r.err and "at least 1h" in r.err,
              "no clear message for history_retention = 90:\n%s" % h.tail(r.err))


def rejects(order):
    passes = 4
    # fewer calls than a page: the fault's 3 extra records must not make the page longer
    # than limit (such a page is refused whole)
    with h.Case("rejects_" + order, order=order, seed=23, calls=CALLS, page_size=PAGE) as c:
        calls = c.sim.calls()
        for k in range(1, passes + 1):
            fl.faults(c.sim, queue=[{"kind": "bad_records", "tag": "pass %d" % k}])
            r = c.run("backfill")
            c.expect_rc(r, 0, "backfill %d with changing bad records" % k)
            c.assert_exact("after backfill %d" % k)
            rej = fl.rejects(c)
            h.log("pass %d: %d reject rows: %s" % (k, len(rej), [
                (x.get("reject_key"), x.get("times_seen")) for x in rej]))
            check(len(rej) == 3, "pass %d: vozagent.rejects holds %d rows, expected 3 (one "
                  "per bad record: no id, numeric id, repeated id)" % (k, len(rej)))
        check(all(x["times_seen"] == passes for x in rej),
              "times_seen %s, expected %d each" % ([x["times_seen"] for x in rej], passes))
        run = c.last_run()
        byreason = {}
        for x in rej:
            raw = json.loads(x["raw"])
            if "repeat" in x["reason"]:
                byreason["dup"] = x
                check(x["record_id"] == calls[0]["id"] if order == "oldest_first" else True,
                      "repeated id: record_id %r, expected %r" % (x["record_id"], calls[0]["id"]))
                check(x["record_id"] is not None and x["reject_key"] == "id " + x["record_id"],
                      "repeated id: key %r" % x["reject_key"])
            else:
                check(raw.get("tag") == "pass %d" % passes,
                      "reject row %s holds raw %s, not the last pass's record"
                      % (x["reject_key"], h.short(x["raw"])))
                byreason["noid" if "id" not in raw else "numeric"] = x
            check(x["run_id"] == run["id"] and x["rejected_at"] <= x["last_seen_at"],
                  "reject %s: run_id %s (last run %s), rejected_at %s, last_seen_at %s"
                  % (x["reject_key"], x["run_id"], run["id"], x["rejected_at"],
                     x["last_seen_at"]))
        check(set(byreason) == {"dup", "noid", "numeric"}, "reject rows: %s" % sorted(byreason))
        # page at offset 0: [no id] + 10 calls + [numeric id] + 10 calls + [repeat]
        check(byreason["noid"]["list_position"] == 0 and byreason["noid"]["record_id"] is None,
              "record without id: position %s, record_id %r, expected 0 and none"
              % (byreason["noid"]["list_position"], byreason["noid"]["record_id"]))
        check(byreason["numeric"]["list_position"] == 1 + CALLS // 2,
              "record with a numeric id: position %s, expected %d"
              % (byreason["numeric"]["list_position"], 1 + CALLS // 2))


STATUS_COUNTS = ("select coalesce(json_object_agg(source, json_build_array(live_calls, "
                 "deleted_calls, in_progress_calls, oldest_in_progress_started_at)), '{}') "
                 "from vozagent.sync_status")
TRUE_COUNTS = ("select coalesce(json_object_agg(source, json_build_array(l, d, i, o)), '{}') "
               "from (select source, count(*) filter (where deleted_at is null) l, "
               "count(*) filter (where deleted_at is not null) d, "
               "count(*) filter (where deleted_at is null and call_status = 'in-progress') i, "
               "min(call_started_at) filter (where deleted_at is null "
               "and call_status = 'in-progress') o from vozagent.calls group by source) x")


def assert_counts(c, when):
    view, true = c.qjson(STATUS_COUNTS), c.qjson(TRUE_COUNTS)
    zero = [0, 0, 0, None]
    bad = {s: (view.get(s, zero), true.get(s, zero)) for s in set(view) | set(true)
           if view.get(s, zero) != true.get(s, zero)}
    check(not bad, "%s: sync_status differs from a count over vozagent.calls "
          "(source: [view], [count]): %s" % (when, bad))
    h.log("counts exact %s: %s" % (when, true))


def plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def counters(order):
    with h.Case("counters_" + order, order=order, seed=37, calls=300, page_size=50) as c:
        c.expect_rc(c.run("backfill"), 0)
        c.assert_exact("after backfill")
        assert_counts(c, "after backfill")
        for rnd in range(1, 5):
            c.sim.add(count=7, in_progress=0.5)
            c.sim.finish(count=4)
            ids = [x["id"] for x in c.sim.calls()]
            c.sim.update(ids=ids[rnd * 10:rnd * 10 + 3], set={"call_intent": "round %d" % rnd})
            c.sim.delete(count=3)
            cmd = "backfill" if rnd % 2 == 0 else "once"
            c.expect_rc(c.run(cmd), 0, "%s of round %d" % (cmd, rnd))
            # an incremental pass leaves edits of old calls and deletions to the backfill
            if cmd == "backfill":
                c.assert_exact("after round %d" % rnd)
            assert_counts(c, "after round %d (%s)" % (rnd, cmd))
        check(c.qjson(STATUS_COUNTS)[c.source][1] > 0, "no call was marked deleted: the "
              "deleted counter was not exercised")

        # writes by hand: the triggers count them too
        some = c.qjson("select json_agg(id order by id) from vozagent.calls "
                       "where deleted_at is null")
        c.q("update vozagent.calls set source = 'by_hand' where id in ('%s', '%s')"
            % (some[0], some[1]))
        c.q("delete from vozagent.calls where id = '%s'" % some[2])
        c.q("update vozagent.calls set deleted_at = now() where id = '%s'" % some[3])
        assert_counts(c, "after writes by hand")

        # a call of a new source: its sync_state row comes from the trigger, cursor NULL,
        # and the first backfill of that source must still commit its cursor
        fresh = c.source + "_fresh"
        c.q("insert into vozagent.calls (id, raw, source, call_status, call_started_at) "
            "values ('by-hand-1', '{}', '%s', 'in-progress', '2020-01-01T00:00:00Z')" % fresh)
        st = c.qjson("select row_to_json(s) from vozagent.sync_state s where source = '%s'"
                     % fresh)
        check(st and st["newest_started_at"] is None and st["live_calls"] == 1,
              "the insert did not create source %s's sync_state row with a NULL cursor: %s"
              % (fresh, st))
        assert_counts(c, "after a call of a new source")
        r = c.run("backfill", env={"VOZAGENT_SOURCE": fresh})
        c.expect_rc(r, 0, "backfill of a source whose sync_state row the trigger made")
        st = c.qjson("select row_to_json(s) from vozagent.sync_state s where source = '%s'"
                     % fresh)
        check(st["last_backfill_at"] is not None and st["api_order"] == order,
              "the backfill of %s did not write its cursor: %s" % (fresh, st))
        assert_counts(c, "after the backfill of %s" % fresh)

        # many calls at once, then the plan of the status view
        c.q("insert into vozagent.calls (id, raw, source, call_status, call_started_at, "
            "deleted_at) select 'bulk-' || n, '{}', 'bulk', "
            "case when n % 100 = 0 then 'in-progress' else 'completed' end, "
            "timestamptz '2021-01-01' + n * interval '1 min', "
            "case when n % 10 = 0 then now() end from generate_series(1, 50000) n; "
            "analyze vozagent.calls")
        assert_counts(c, "after 50000 calls inserted by one statement")
        plan = c.qjson("explain (format json) select * from vozagent.sync_status")[0]["Plan"]
        scans = [(n["Node Type"], n.get("Index Name")) for n in plan_nodes(plan)
                 if n.get("Relation Name") == "calls"]
        h.log("status view reads vozagent.calls through: %s" % scans)
        check(scans and all(t in ("Index Scan", "Index Only Scan") and
                            i == "calls_unfinished_started_idx" for t, i in scans),
              "the status view reads vozagent.calls other than by one probe of the "
              "unfinished-calls index: %s" % scans)

        c.q("truncate vozagent.calls")
        assert_counts(c, "after TRUNCATE")
        c.expect_rc(c.run("backfill"), 0, "backfill after TRUNCATE")
        c.assert_exact("after TRUNCATE and backfill")
        assert_counts(c, "after TRUNCATE and backfill")


def migrate_from_003():
    with h.Case("migrate_003", seed=5, calls=CALLS, page_size=PAGE) as c:
        files = ["001_init.sql", "002_reconcile.sql", "003_rejects.sql"]
        sql = ["CREATE SCHEMA vozagent;",
               "CREATE TABLE vozagent.schema_migrations (version integer PRIMARY KEY, "
               "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"]
        for n, f in enumerate(files, 1):
            with open(os.path.join(REPO, "sql", f)) as fh:
                sql.append(fh.read())
            sql.append("INSERT INTO vozagent.schema_migrations (version, name) "
                       "VALUES (%d, '%s');" % (n, f[:-4]))
        path = c.write_config("BEGIN;\n" + "\n".join(sql) + "\nCOMMIT;\n", "schema003.sql")
        c.q("\\i " + path)
        c.q("""
            insert into vozagent.calls (id, raw, source, call_status, call_started_at, deleted_at)
            select 'a-' || n, '{}', 'a',
                   case when n <= 2 then 'in-progress' else 'completed' end,
                   timestamptz '2024-01-01' + n * interval '1 h',
                   case when n > 7 then timestamptz '2024-02-01' end
              from generate_series(1, 10) n;
            insert into vozagent.calls (id, raw, source, call_status)
            select 'b-' || n, '{}', 'b', 'completed' from generate_series(1, 4) n;
            insert into vozagent.sync_state (source, api_order, newest_started_at)
            values ('a', 'oldest_first', '2024-01-01T10:00:00Z');
            insert into vozagent.rejects (source, run_id, list_offset, reason, raw, rejected_at)
            values ('a', 1, 0, 'r1 first', '{"id": "r1", "v": 1}', '2024-03-01'),
                   ('a', 3, 0, 'r1 last', '{"id": "r1", "v": 3}', '2024-03-03'),
                   ('a', 2, 0, 'r1 middle', '{"id": "r1", "v": 2}', '2024-03-02'),
                   ('a', 2, 0, 'r2', '{"id": "r2"}', '2024-03-02'),
                   ('b', 2, 0, 'r1 of b', '{"id": "r1", "v": 9}', '2024-03-02'),
                   ('a', 1, 0, 'no id 1', '{"note": "no id", "v": 1}', '2024-03-01'),
                   ('a', 2, 0, 'no id 2', '{"note": "no id", "v": 2}', '2024-03-02'),
                   ('a', 2, 25, 'numeric id', '{"id": 12}', '2024-03-02'),
                   ('a', 2, 50, 'cut short', '{"id": "r9", "deep": [[[', '2024-03-02');
            """)
        r = c.run("migrate")
        c.expect_rc(r, 0, "migrate from 003")
        version = int(c.scalar("select max(version) from vozagent.schema_migrations"))
        check(version >= 4, "schema at version %d after migrate" % version)
        rej = fl.rejects(c)
        h.log("rejects after the migration: %s" % [
            (x["source"], x["reject_key"], x["times_seen"]) for x in rej])
        check(len(rej) == 7, "%d reject rows after the migration, expected 7 (3 copies of r1 "
              "in source a collapsed into one)" % len(rej))
        r1 = [x for x in rej if x["source"] == "a" and x["record_id"] == "r1"]
        check(len(r1) == 1, "source a's id r1: %d rows" % len(r1))
        r1 = r1[0]
        check(r1["times_seen"] == 3 and r1["reason"] == "r1 last" and r1["run_id"] == 3 and
              json.loads(r1["raw"])["v"] == 3 and r1["rejected_at"].startswith("2024-03-01") and
              r1["last_seen_at"].startswith("2024-03-03"),
              "collapsed row of r1: %s" % r1)
        rest = [x for x in rej if x is not r1 and x["id"] != r1["id"]]
        check(all(x["times_seen"] == 1 and x["last_seen_at"] == x["rejected_at"] for x in rest),
              "rows kept as they were: %s" % rest)
        check(sorted(x["record_id"] or "-" for x in rest) == ["-", "-", "-", "-", "r1", "r2"],
              "record ids taken from raw: %s" % sorted(x["record_id"] or "-" for x in rest))
        st = c.qjson("select json_object_agg(source, json_build_array(live_calls, deleted_calls, "
                     "in_progress_calls, newest_started_at)) from vozagent.sync_state")
        check(st == {"a": [7, 3, 2, "2024-01-01T10:00:00+00:00"], "b": [4, 0, 0, None]},
              "sync_state after the migration: %s, expected a: 7 live, 3 deleted, 2 in "
              "progress, its cursor kept; b: 4 live, no cursor" % st)
        assert_counts(c, "after the migration")
        # the daemon goes on from there: a new source, then rejects of its own
        fl.faults(c.sim, queue=[{"kind": "bad_records", "tag": "x"}])
        c.expect_rc(c.run("backfill"), 0, "backfill after the migration")
        assert_counts(c, "after a backfill on the migrated database")
        check(len(fl.rejects(c)) == 10, "rejects after a backfill with 3 bad records: %d"
              % len(fl.rejects(c)))


if __name__ == "__main__":
    h.main([("retention", retention), ("migrate_from_003", migrate_from_003)]
           + h.both_orders(rejects, "rejects") + h.both_orders(counters, "counters"))
