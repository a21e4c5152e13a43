#!/usr/bin/env python3
"""The reporting settings of a source, through the real binary, the simulator and
PostgreSQL (one case, one order: none of it depends on the API's order):

unknown zone: report_time_zone = a zone PostgreSQL does not know fails the pass with a
  message naming the key and its value (once exits 78), writes nothing of the batch,
  records the failed run; `check` says so on its own line and exits 78.
run id: each change-history row carries the id of the sync_runs row of the pass that
  wrote it (the batch's SET LOCAL vozagent.run_id).
restart: a new zone at the next start rebuilds the rollup (a call at 23:30 UTC moves
  to the next day in Europe/Madrid) and says so.
history: history = off writes no call_changes while the mirror still follows the
  API; on again records the next change.
change_retention: forever keeps aged rows; 5d deletes the source's rows observed
  before then (aged with an UPDATE as the owner), keeps the rest, and says how many.
reload: a new zone in the file, SIGHUP, and the running daemon's next pass rebuilds
  the rollup.
"""

import os
import re
import signal

import harness as h
from harness import check

BAD_ZONE = "Mars/Olympus_Mons"
MIDNIGHT = "midnight-call-1"
ASSISTANT = "asst-midnight"


def changes(c, where="true"):
    return c.qjson("select coalesce(json_agg(x order by x.observed_at, x.call_id, x.op, "
                   "x.field), '[]') from "
                   "vozagent.call_changes x where source = '%s' and %s" % (c.source, where))


def midnight_dates(c):
    return c.qjson("select coalesce(json_agg(call_date order by call_date), '[]') "
                   "from vozagent.calls_daily where source = '%s' and assistant_id = '%s'"
                   % (c.source, ASSISTANT))


def unknown_zone(c):
    r = c.run("once", env={"VOZAGENT_REPORT_TIME_ZONE": BAD_ZONE})
    c.expect_rc(r, 78, "once with a zone PostgreSQL does not know: a configuration error")
    check(re.search(r"report_time_zone '%s' is not a time zone PostgreSQL knows: set "
                    r"report_time_zone to a name it lists" % re.escape(BAD_ZONE), r.err),
          "no clear message naming report_time_zone and its value:\n%s" % r.err)
    check(c.count_calls() == 0, "the pass with an unknown zone wrote %d calls"
          % c.count_calls())
    run = c.last_run()
    check(run is not None and run["outcome"] == "failed" and BAD_ZONE in (run["error"] or ""),
          "the failed pass is not recorded with its error: %s" % run)

    r = c.run("check", env={"VOZAGENT_REPORT_TIME_ZONE": BAD_ZONE})
    c.expect_rc(r, 78, "check with an unknown zone")
    lines = [x for x in r.out.splitlines() if x.startswith("report_time_zone: ")]
    check(len(lines) == 1 and "FAIL: '%s' is not a time zone PostgreSQL knows" % BAD_ZONE
          in lines[0], "check has no report_time_zone line saying so:\n%s" % r.out)
    r = c.run("check")
    c.expect_rc(r, 0, "check with the default zone")
    check("report_time_zone: OK (UTC)" in r.out, "no OK line for UTC:\n%s" % r.out)


def first_pass_and_run_ids(c):
    r = c.run("once")
    c.expect_rc(r, 0)
    c.assert_exact("after the first pass")
    run = c.last_run()
    got = changes(c)
    check(len(got) == c.count_calls() and all(x["op"] == "insert" for x in got),
          "%d insert rows for %d calls" % (len(got), c.count_calls()))
    ids = {x["run_id"] for x in got}
    check(ids == {run["id"]}, "history rows carry run ids %s, the pass was run %s"
          % (ids, run["id"]))
    check(midnight_dates(c) == ["2026-11-30"], "in UTC, the 23:30 call is on %s"
          % midnight_dates(c))


def restart_new_zone(c):
    r = c.run("once", env={"VOZAGENT_REPORT_TIME_ZONE": "Europe/Madrid"})
    c.expect_rc(r, 0)
    check("report_time_zone is now Europe/Madrid: the rollup of source '%s' was rebuilt"
          % c.source in r.err, "no log line of the rebuild:\n%s" % r.err)
    check(midnight_dates(c) == ["2026-12-01"], "in Europe/Madrid, the 23:30 UTC call is on %s"
          % midnight_dates(c))
    check(c.sync_state()["report_time_zone"] == "Europe/Madrid", "zone not stored")
    # the same zone again: nothing rebuilt, nothing said
    r = c.run("once", env={"VOZAGENT_REPORT_TIME_ZONE": "Europe/Madrid"})
    c.expect_rc(r, 0)
    check("was rebuilt" not in r.err, "a rebuild with an unchanged zone:\n%s" % r.err)


def history_off_on(c):
    env = {"VOZAGENT_REPORT_TIME_ZONE": "Europe/Madrid"}
    before = len(changes(c))
    c.sim.update(ids=[MIDNIGHT], set={"call_intent": "history-off"})
    r = c.run("once", env=dict(env, VOZAGENT_HISTORY="off"))
    c.expect_rc(r, 0)
    c.assert_exact("after a change with history = off")
    check(len(changes(c)) == before, "history = off wrote %d rows"
          % (len(changes(c)) - before))
    check(c.sync_state()["history"] is False, "history = off not stored")

    c.sim.update(ids=[MIDNIGHT], set={"call_intent": "history-on"})
    r = c.run("once", env=dict(env, VOZAGENT_HISTORY="on"))
    c.expect_rc(r, 0)
    c.assert_exact("after a change with history = on")
    got = changes(c, "call_id = '%s' and op = 'update'" % MIDNIGHT)
    run = c.last_run()
    check([(x["field"], x["old_value"], x["new_value"], x["run_id"]) for x in got] ==
          [("call_intent", "history-off", "history-on", run["id"])],
          "history = on again: %s (the pass was run %s)" % (got, run["id"]))


def retention(c):
    env = {"VOZAGENT_REPORT_TIME_ZONE": "Europe/Madrid"}
    total = len(changes(c))
    # all but the last change observed 10 days ago
    c.q("update vozagent.call_changes set observed_at = observed_at - interval '10 days' "
        "where source = '%s' and new_value is distinct from '\"history-on\"'" % c.source)
    r = c.run("once", env=env)
    c.expect_rc(r, 0)
    check(len(changes(c)) == total, "change_retention = forever removed rows")
    r = c.run("once", env=dict(env, VOZAGENT_CHANGE_RETENTION="5d"))
    c.expect_rc(r, 0)
    left = changes(c)
    check(len(left) == 1 and left[0]["new_value"] == "history-on",
          "change_retention = 5d left %s" % left)
    check("change_retention: removed %d old changes of source '%s'" % (total - 1, c.source)
          in r.err, "no log line of the pruning:\n%s" % r.err)


def reload_zone(c):
    conf = "poll_interval = 1s\nreport_time_zone = %s\n"
    c.write_config(conf % "Europe/Madrid")
    p = c.spawn("run")
    runs = len(c.sync_runs())
    c.wait_for("a pass of the daemon", lambda: len([x for x in c.sync_runs()[runs:]
                                                    if x["outcome"] == "ok"]) > 0)
    check(midnight_dates(c) == ["2026-12-01"], "the daemon changed the rollup on its own")
    c.write_config(conf % "America/New_York")
    os.kill(p.pid, signal.SIGHUP)
    c.wait_for("the rollup in America/New_York", lambda: midnight_dates(c) == ["2026-11-30"]
               and c.sync_state()["report_time_zone"] == "America/New_York")
    h.terminate(p)
    r = c.wait(p, 30)
    c.expect_rc(r, 0)
    check("report_time_zone is now America/New_York" in r.err,
          "no log line of the rebuild after the reload:\n%s" % r.err)


def settings():
    with h.Case("bi_settings", calls=12, seed=1007) as c:
        rec = dict(c.sim.calls()[0])
        rec.update(id=MIDNIGHT, assistant_id=ASSISTANT, call_started_at="2026-11-30T23:30:00Z")
        c.sim.add(records=[rec])
        for name, fn in (("unknown zone", unknown_zone), ("run ids", first_pass_and_run_ids),
                         ("restart with a new zone", restart_new_zone),
                         ("history off and on", history_off_on),
                         ("change_retention", retention), ("reload", reload_zone)):
            h.log("-- %s" % name)
            fn(c)


if __name__ == "__main__":
    h.main([("reporting settings", settings)])
