#!/usr/bin/env python3
"""`vozagent-sync check`: one line per check (configuration, API, database, schema, rights),
OK or the error and what to do; the exit status names the most lasting problem (78
configuration, 77 key refused, 69 database, 75 API down or failing); nothing is changed
(no migration, no call written) and the key is never printed (harness check_secrets, and a
proxy page that echoes the Authorization header)."""

import os
import re
import subprocess

import faultlib as fl
import harness as h
from harness import check

WRITER_SQL = os.path.join(h.REPO, "docs", "writer-role.sql")


def lines(r, what):
    """The lines of stdout that start with `what: `."""
    return [ln for ln in r.out.splitlines() if ln.startswith(what + ": ")]


def expect_line(r, what, pattern):
    got = lines(r, what)
    check(any(re.search(pattern, ln) for ln in got),
          "check: no %r line matching %r; stdout:\n%s" % (what, pattern, h.tail(r.out)))


def expect_ok(r, what):
    expect_line(r, what, r"^%s: OK\b" % re.escape(what))


def check_run(c, env=None, config=None):
    r = c.run("check", env=env, config=config, timeout=60)
    h.log("check -> %s:\n%s" % (r.rc, r.out.rstrip()))
    return r


def list_requests(c):
    return [x for x in c.sim.requests() if x["path"].endswith("/calls")]


def conninfo_as(c, role):
    v = c.pg.vars
    return "host=%s port=%s user=%s dbname=%s" % (v["PGHOST"], v["PGPORT"], role, c.db)


def all_ok():
    with h.Case("check_ok", calls=30, env={"VOZAGENT_STATUS": "completed"}) as c:
        # a fresh database and a role that may create the schema: OK, and nothing created
        c.sim.clear_requests()
        r = check_run(c)
        c.expect_rc(r, 0, "check against a fresh database, as its owner")
        for what in ("configuration", "API", "database", "schema", "rights"):
            expect_ok(r, what)
        expect_line(r, "schema", r"not created yet")
        check(not c.has_table("vozagent.schema_migrations"), "check created the schema")
        reqs = list_requests(c)
        check(len(reqs) == 1, "check made %d requests to the API, expected 1" % len(reqs))
        req = reqs[0]
        check(req["limit"] == 1 and req["offset"] == 0 and req["auth"] == "ok" and
              req["params"].get("status") == "completed",
              "check's request is not the filtered limit=1 listing: %s" % req)

        c.expect_rc(c.run("migrate"), 0, "migrate")
        r = check_run(c)
        c.expect_rc(r, 0, "check after migrate")
        expect_line(r, "schema", r"OK \(version \d+, up to date\)")
        expect_line(r, "rights", r"OK \(this role may write the mirror\)")
        expect_line(r, "API", r"OK .*1 call for limit=1")
        check(c.count_calls() == 0, "check wrote calls")
        check(c.scalar("select count(*) from vozagent.sync_runs") == "0", "check recorded a run")


def bad_config():
    with h.Case("check_config", calls=10) as c:
        c.sim.clear_requests()
        cfg = c.write_config("page_size = 500\npoll_interval = soon\n", name="bad.conf")
        r = check_run(c, config=cfg)
        c.expect_rc(r, 78, "an invalid configuration")
        expect_line(r, "configuration", r"FAIL: .*bad\.conf:1.*page_size")
        expect_line(r, "configuration", r"FAIL: .*bad\.conf:2.*poll_interval")
        expect_line(r, "API", r"not checked")
        check(not list_requests(c), "check asked the API with an invalid configuration")

        # no key at all is a configuration error too: `run` needs one
        r = check_run(c, env={"VOZAGENT_API_TOKEN": None})
        c.expect_rc(r, 78, "no API key")
        expect_line(r, "configuration", r"FAIL: .*(token|key)")

        # the API refusing the request with filters set points at them
        c.sim.faults(queue=["400"])
        r = check_run(c, env={"VOZAGENT_CONTACT_ID": "no-such-contact"})
        c.expect_rc(r, 78, "a filter the API refuses")
        expect_line(r, "API", r"FAIL: .*HTTP 400.*check the filters")


def key_refused():
    with h.Case("check_key", calls=10) as c:
        c.expect_rc(c.run("migrate"), 0, "migrate")
        wrong = "wrong-key-" + os.urandom(9).hex()
        c.secrets.append(wrong)
        r = check_run(c, env={"VOZAGENT_API_TOKEN": wrong})
        c.expect_rc(r, 77, "a key the API refuses")
        expect_line(r, "API", r"FAIL: the API refused the key from api_token "
                    r"\(VOZAGENT_API_TOKEN\) \(HTTP 401.*check api_token")
        # the database is still checked: every problem shows in one run
        expect_ok(r, "database")
        expect_ok(r, "schema")

        keyfile = c.write_config(wrong + "\n", name="token")
        r = check_run(c, env={"VOZAGENT_API_TOKEN": None, "VOZAGENT_API_TOKEN_FILE": keyfile})
        c.expect_rc(r, 77, "a refused key from a file")
        expect_line(r, "API", r"FAIL: the API refused the key from api_token_file")

        # a proxy error page that echoes the request headers: the key must not come back
        c.sim.faults(queue=[{"kind": "echo_headers", "status": 400}])
        r = check_run(c)
        c.expect_rc(r, 75, "an echoing proxy page")
        expect_line(r, "API", r"FAIL: .*HTTP 400")


def api_down():
    with h.Case("check_api_down", calls=10) as c:
        c.expect_rc(c.run("migrate"), 0, "migrate")
        url = "http://127.0.0.1:%d/v1" % fl.closed_port()
        r = check_run(c, env={"VOZAGENT_API_URL": url})
        c.expect_rc(r, 75, "the API on a closed port")
        expect_line(r, "API", r"FAIL: cannot reach %s: .*check api_url" % re.escape(url))
        expect_ok(r, "database")

        c.sim.faults(queue=["503"])
        r = check_run(c)
        c.expect_rc(r, 75, "the API answering 503")
        expect_line(r, "API", r"FAIL: the API answered HTTP 503")

        c.sim.faults(queue=["html"])
        r = check_run(c)
        c.expect_rc(r, 75, "the API answering 200 with an HTML page")
        expect_line(r, "API", r"FAIL: the API answered HTTP 200 but not with a list of calls")

        # both away: the database is the more lasting problem
        r = check_run(c, env={"VOZAGENT_API_URL": url, "VOZAGENT_DATABASE_URL":
                              "host=127.0.0.1 port=%d dbname=x connect_timeout=5"
                              % fl.closed_port()})
        c.expect_rc(r, 69, "API and database both unreachable")


def database_unreachable():
    with h.Case("check_db_down", calls=10) as c:
        port = fl.closed_port()
        r = check_run(c, env={"VOZAGENT_DATABASE_URL":
                              "host=127.0.0.1 port=%d dbname=x connect_timeout=5" % port})
        c.expect_rc(r, 69, "PostgreSQL on a closed port")
        expect_ok(r, "API")
        expect_line(r, "database", r"FAIL: cannot connect to PostgreSQL.*check database_url")
        check(not lines(r, "schema"), "a schema line without a database:\n%s" % r.out)


def writer_role():
    """A role without CREATE: an unmigrated schema and missing grants are failures, named."""
    with h.Case("check_writer", calls=10) as c, h.Role(c.pg, "e2e_chk_writer") as w:
        env = {"VOZAGENT_DATABASE_URL": conninfo_as(c, w.name)}
        r = check_run(c, env=env)
        c.expect_rc(r, 69, "a schema not migrated, and a role that may not migrate it")
        expect_line(r, "schema", r"FAIL: not created .*run `vozagent-sync migrate` as the "
                    r"schema's owner")
        check(not c.has_table("vozagent.schema_migrations"), "check created the schema")

        c.expect_rc(c.run("migrate"), 0, "migrate as the owner")
        r = check_run(c, env=env)
        c.expect_rc(r, 69, "a role without the writer's grants")
        expect_line(r, "schema", r"FAIL: this role lacks USAGE on schema vozagent.*"
                    r"docs/writer-role.sql")

        p = subprocess.run([c.pg.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v",
                            "writer=" + w.name, "-f", WRITER_SQL], env=c.pg.env(c.db),
                           capture_output=True, timeout=60)
        check(p.returncode == 0, "docs/writer-role.sql failed: %s" % p.stderr[-500:])
        # only what the daemon uses: nothing on the reporting tables, no DELETE on calls
        got = c.qjson("select json_agg(t || ' ' || p order by t, p) from unnest(array["
                      "'vozagent.calls', 'vozagent.calls_daily_rollup', "
                      "'vozagent.call_changes', 'vozagent.raw_field_stats']) t, "
                      "unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p "
                      "where has_table_privilege('%s', t, p)" % w.name)
        check(got == ["vozagent.calls INSERT", "vozagent.calls SELECT",
                      "vozagent.calls UPDATE"],
              "docs/writer-role.sql grants more (or less) than the daemon uses: %s" % got)
        c.q('REVOKE UPDATE ON vozagent.calls FROM "%s"' % w.name)
        c.q('REVOKE EXECUTE ON FUNCTION vozagent.configure_source(text, text, boolean) '
            'FROM "%s"' % w.name)
        r = check_run(c, env=env)
        c.expect_rc(r, 69, "a writer that may not UPDATE vozagent.calls nor configure_source")
        expect_line(r, "rights", r"FAIL: this role lacks UPDATE on vozagent\.calls, "
                    r"EXECUTE on vozagent\.configure_source\(text,text,boolean\):")

        c.q('GRANT UPDATE ON vozagent.calls TO "%s"' % w.name)
        c.q('GRANT EXECUTE ON FUNCTION vozagent.configure_source(text, text, boolean) '
            'TO "%s"' % w.name)
        r = check_run(c, env=env)
        c.expect_rc(r, 0, "the writer role with docs/writer-role.sql's grants")
        expect_line(r, "rights", r"OK \(this role may write the mirror\)")


if __name__ == "__main__":
    h.main([("all OK", all_ok), ("bad configuration", bad_config), ("key refused", key_refused),
            ("API down", api_down), ("database unreachable", database_unreachable),
            ("writer role", writer_role)])
