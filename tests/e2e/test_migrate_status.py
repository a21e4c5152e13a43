#!/usr/bin/env python3
"""migrate creates the schema of the contract on an empty database and is a no-op the
second time; status works on an empty mirror, after a backfill (naming the source and
its row count) and for a source whose only pass failed (naming it and showing the
error); an unreachable database exits 69."""

import os
import re

import harness as h
from harness import check

CALLS_COLUMNS = {
    "id": "text", "contact_id": "text", "assistant_id": "text", "call_type": "text",
    "call_status": "text", "duration_seconds": "numeric",
    "call_started_at": "timestamp with time zone", "call_ended_at": "timestamp with time zone",
    "appointment_booked": "boolean", "lead_qualification": "text", "call_intent": "text",
    "raw": "jsonb", "source": "text", "first_seen_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone", "deleted_at": "timestamp with time zone",
}
RUNS_COLUMNS = ("id", "source", "mode", "started_at", "finished_at", "requests", "pages",
                "records_seen", "inserted", "updated", "rejected", "warnings", "outcome", "error")


def scenario(order):
    ncalls = 137
    source = "e2e_status_" + order
    with h.Case("migrate", order=order, seed=91, calls=ncalls, source=source) as c:
        r = c.run("migrate")
        c.expect_rc(r, 0)
        for t in ("calls", "sync_state", "sync_runs", "schema_migrations"):
            check(c.has_table("vozagent." + t), "migrate did not create vozagent.%s" % t)
        cols = c.qjson("select json_object_agg(column_name, data_type || ' ' || is_nullable) "
                       "from information_schema.columns "
                       "where table_schema = 'vozagent' and table_name = 'calls'")
        for col, typ in CALLS_COLUMNS.items():
            check(col in cols, "vozagent.calls has no column %s" % col)
            check(cols[col].rsplit(" ", 1)[0] == typ, "vozagent.calls.%s is %s, expected %s"
                  % (col, cols[col], typ))
        check(cols["raw"].endswith(" NO"), "vozagent.calls.raw is nullable")
        pk = c.scalar("select string_agg(a.attname, ',') from pg_index i join pg_attribute a "
                      "on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
                      "where i.indrelid = 'vozagent.calls'::regclass and i.indisprimary")
        check(pk == "id", "primary key of vozagent.calls is (%s), expected (id)" % pk)
        runcols = c.qjson("select json_agg(column_name) from information_schema.columns "
                          "where table_schema = 'vozagent' and table_name = 'sync_runs'")
        missing = [x for x in RUNS_COLUMNS if x not in runcols]
        check(not missing, "vozagent.sync_runs lacks %s" % missing)
        check("source" in c.qjson("select json_agg(column_name) from information_schema.columns "
                                  "where table_schema = 'vozagent' and table_name = 'sync_state'"),
              "vozagent.sync_state has no column source")

        mig = ("select coalesce(json_agg(m order by version), '[]') "
               "from vozagent.schema_migrations m")
        applied = c.qjson(mig)
        check(len(applied) >= 1, "schema_migrations is empty after migrate")
        r = c.run("migrate")
        c.expect_rc(r, 0, "second migrate")
        check(c.qjson(mig) == applied, "the second migrate changed schema_migrations")
        check(not h.api_log_since(c.sim.requests()), "migrate talked to the API")

        r = c.run("status")
        c.expect_rc(r, 0, "status on an empty mirror")

        r = c.run("backfill")
        c.expect_rc(r, 0)
        c.assert_exact("after backfill")
        check(c.qjson(mig) == applied, "backfill changed schema_migrations")
        r = c.run("status")
        c.expect_rc(r, 0, "status after a backfill")
        check(source in r.out, "status does not name the source %s:\n%s" % (source, r.out))
        check(re.search(r"\b%d\b" % ncalls, r.out),
              "status does not show the row count %d:\n%s" % (ncalls, r.out))
        h.log("status output:\n" + r.out.rstrip())

        # A second source whose first pass fails: status lists it too, with the error.
        other = source + "_never_synced"
        wrong = "wrong-key-" + os.urandom(6).hex()
        c.secrets.append(wrong)
        c.expect_rc(c.run("once", env={"VOZAGENT_API_TOKEN": wrong, "VOZAGENT_SOURCE": other}),
                    77, "wrong key")
        err = c.scalar("select coalesce(max(error), '') from vozagent.sync_runs "
                       "where source = '%s' and outcome = 'failed'" % other)
        check(err, "the failed pass of source %s is not in sync_runs with its error" % other)
        r = c.run("status")
        c.expect_rc(r, 0, "status with a source whose only pass failed")
        check(source in r.out and re.search(r"\b%d\b" % ncalls, r.out),
              "status no longer shows source %s with %d calls:\n%s" % (source, ncalls, r.out))
        check(other in r.out, "status does not name the source %s whose only pass failed:\n%s"
              % (other, r.out))
        check(err in r.out, "status does not show the last error %r:\n%s" % (err, r.out))

        # The database is not there: exit 69, quickly, with a message.
        down = {"VOZAGENT_DATABASE_URL": "host=/nonexistent-e2e-socket-dir port=1 user=nobody "
                                         "dbname=nothing connect_timeout=5"}
        for cmd in ("migrate", "status", "once"):
            r = c.run(cmd, env=down, timeout=60)
            c.expect_rc(r, 69, "%s with the database unreachable" % cmd)
            check(r.err.strip(), "%s: exit 69 without a message" % cmd)
            check(r.elapsed < h.scaled(20),
                  "%s took %.1fs to give up on the database" % (cmd, r.elapsed))


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "migrate+status"))
