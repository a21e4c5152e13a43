#!/usr/bin/env python3
"""grafana_board: the Grafana board (config/grafana/vozagent.json) cannot drift from the
schema. Every panel's and variable's SQL is taken from the JSON, its template variables
and macros are expanded the way Grafana and its PostgreSQL data source expand them, and
it is run against a small mirror loaded through the binary and the simulator, as a login
role created with the three lines docs/bi.md gives (granted vozagent_reader): a panel
that names a missing column, or reads a table the reader may not read, fails here.
The key panels must return rows, the funnel the counts worked out by hand below, also
with the source's days in a zone 14 hours ahead of UTC. The checker itself is shown to
catch a broken column, a forbidden table and an unknown macro.
"""

import copy
import datetime as dt
import json
import os
import re
import subprocess
from decimal import Decimal

import harness as h
from harness import check

DASHBOARD = os.path.join(h.REPO, "config", "grafana", "vozagent.json")
BI_DOC = os.path.join(h.REPO, "docs", "bi.md")
DS = {"type": "grafana-postgresql-datasource", "uid": "${DS_VOZAGENT}"}

# What a panel may read: the views of schema vozagent made for dashboards.
VIEWS = {"calls_live", "calls_daily", "daily_totals", "assistant_performance", "lead_funnel",
         "contacts", "calls_hourly", "hourly_heatmap", "sync_freshness", "raw_fields",
         "call_status_durations", "lead_upgrades"}
# Named in no panel (the reader may not read them, or they are internal).
FORBIDDEN = ("calls", "sync_state", "sync_runs", "rejects", "calls_daily_rollup",
             "raw_field_stats", "backfill_seen_batches", "schema_migrations", "sync_status")

# Grafana's global variables the board may use, as Grafana sets them for a 30-day range.
GLOBALS = {"__interval": "1h", "__interval_ms": "3600000"}


# ------------------------------------------------------------- the JSON ----

def load_dashboard(path=DASHBOARD):
    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        check(not dups, "%s: duplicate keys %s" % (path, dups))
        return dict(pairs)
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f, object_pairs_hook=no_dups)
        except ValueError as e:
            raise h.TestFailure("%s is not valid JSON: %s" % (path, e))


def all_panels(dash):
    """Every panel, those inside collapsed rows too."""
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dash):
    """[(what, sql, format)] of every panel target and query variable."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            out.append(("panel %s %r target %s" % (p.get("id"), p.get("title"), t.get("refId")),
                        t.get("rawSql", ""), t.get("format")))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            out.append(("variable $%s" % v.get("name"),
                        q.get("rawSql", q.get("query")) if isinstance(q, dict) else q, "table"))
    return out


def tables_read(sql):
    """Relations named after FROM or JOIN, without the CTE names the query defines."""
    # the FROM of extract(epoch FROM x) and its kind names no relation
    sql = re.sub(r"\b(extract|substring|trim)(\s*\([^()]*?)\bFROM\b", r"\1\2", sql, flags=re.I)
    ctes = {m.lower() for m in re.findall(r"\b(\w+)\s+AS\s*\(", sql, re.I)}
    names = re.findall(r"\b(?:FROM|JOIN)\s+([\w.\"]+)", sql, re.I)
    return [n.replace('"', "") for n in names if n.lower() not in ctes]


def static_problems(dash):
    """What is wrong with the board without running anything, as strings."""
    problems = []
    inputs = {i.get("name"): i for i in dash.get("__inputs", [])}
    ds_in = inputs.get("DS_VOZAGENT")
    if not ds_in or ds_in.get("type") != "datasource" or ds_in.get("pluginId") != DS["type"]:
        problems.append("__inputs has no PostgreSQL data source input DS_VOZAGENT: %s"
                        % dash.get("__inputs"))
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append("schemaVersion %r: not a Grafana 10 board" % dash.get("schemaVersion"))
    seen = {}
    for p in all_panels(dash):
        pid, title = p.get("id"), p.get("title")
        if not isinstance(pid, int):
            problems.append("panel %r has no integer id" % title)
        elif pid in seen:
            problems.append("panel id %d used twice (%r and %r)" % (pid, seen[pid], title))
        else:
            seen[pid] = title
        if p.get("type") == "row":
            continue
        if p.get("datasource") != DS:
            problems.append("panel %s %r: datasource %r, expected %r"
                            % (pid, title, p.get("datasource"), DS))
        if not p.get("targets"):
            problems.append("panel %s %r has no query" % (pid, title))
        for t in p.get("targets", []):
            if t.get("datasource") != DS:
                problems.append("panel %s %r target %s: datasource %r"
                                % (pid, title, t.get("refId"), t.get("datasource")))
            if not t.get("rawQuery") or not t.get("rawSql", "").strip():
                problems.append("panel %s %r target %s: not a raw SQL query"
                                % (pid, title, t.get("refId")))
            if t.get("format") not in ("table", "time_series"):
                problems.append("panel %s %r: format %r" % (pid, title, t.get("format")))
    names = [v.get("name") for v in dash.get("templating", {}).get("list", [])]
    for want in ("source", "assistant"):
        if want not in names:
            problems.append("no template variable $%s" % want)
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query" and v.get("datasource") != DS:
            problems.append("variable $%s: datasource %r" % (v.get("name"), v.get("datasource")))
    for what, sql, _ in queries(dash):
        for name in tables_read(sql):
            schema, _, rel = name.rpartition(".")
            if schema != "vozagent" or rel not in VIEWS:
                problems.append("%s reads %s: only the views vozagent.{%s} are allowed"
                                % (what, name, ",".join(sorted(VIEWS))))
        for rel in FORBIDDEN:
            if re.search(r"\bvozagent\.\"?%s\b" % rel, sql, re.I):
                problems.append("%s names vozagent.%s" % (what, rel))
    return problems


# ------------------------------------------------- Grafana's interpolation ----

def go_float(x):
    """fmt's %v of a float64 (strconv 'g', shortest): 3600, 86400, 2.592e+06."""
    d = Decimal(repr(float(x))).normalize()
    sign, digits, exp = d.as_tuple()
    nd = len(digits)
    x10 = nd - 1 + exp
    ds = "".join(map(str, digits))
    if x10 < -4 or x10 >= 6:     # shortest formatting: eprec = 6 (strconv/ftoa.go)
        mant = ds[0] + ("." + ds[1:] if nd > 1 else "")
        return "%s%se%s%02d" % ("-" if sign else "", mant, "-" if x10 < 0 else "+", abs(x10))
    return format(d, "f")


def parse_interval(text):
    """gtime.ParseInterval for the units a board uses: ms s m h d w."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    check(m, "interval %r: not one Grafana parses here (use ms, s, m, h, d or w)" % text)
    n = int(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def rfc3339nano(t):
    """Go's time.RFC3339Nano of a UTC instant: no trailing zeros in the fraction."""
    s = t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ("." + "%06d" % t.microsecond).rstrip("0")
    return s + "Z"


MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def expand_macros(sql, t_from, t_to):
    """The PostgreSQL data source's macro engine (TimescaleDB off), on an already
    interpolated query. An unknown macro is an error, as it is in Grafana."""
    errors = []

    def one(m):
        name = m.group(1)
        args = [a.strip(" ") for a in m.group(2).split(",")]
        if name == "__timeGroup":
            # a ',' right after it: the pre-5.3 form, which adds the alias
            i = sql.find(m.group(0))
            if i >= 0 and sql[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        col = args[0]
        if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter") and not col:
            errors.append("macro $%s needs a column" % name)
            return "macro_error()"
        if name == "__time":
            return '%s AS "time"' % col
        if name == "__timeEpoch":
            return 'extract(epoch from %s) as "time"' % col
        if name == "__timeFilter":
            return "%s BETWEEN '%s' AND '%s'" % (col, rfc3339nano(t_from), rfc3339nano(t_to))
        if name == "__timeFrom":
            return "'%s'" % rfc3339nano(t_from)
        if name == "__timeTo":
            return "'%s'" % rfc3339nano(t_to)
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2 or len(args) > 3:
                errors.append("macro $%s needs a column and an interval" % name)
                return "macro_error()"
            sec = go_float(parse_interval(args[1].strip("'")))
            out = "floor(extract(epoch from %s)/%s)*%s" % (col, sec, sec)
            return out + ' AS "time"' if name == "__timeGroupAlias" else out
        if name == "__unixEpochFilter":
            return "%s >= %d AND %s <= %d" % (col, int(t_from.timestamp()), col,
                                              int(t_to.timestamp()))
        errors.append("unknown macro $%s(%s)" % (name, m.group(2)))
        return "macro_error()"

    out = MACRO_RE.sub(one, sql)
    return out, errors


VAR_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def quote_literal(v):
    return "'" + str(v).replace("'", "''") + "'"


def interpolate(sql, variables):
    """Grafana's template service with the SQL data sources' interpolateVariable.
    variables: name -> (value, variable definition); a value is a str or a list.
    Names starting with __ that are not global variables are left for the macro
    engine; any other unknown name is an error."""
    errors = []

    def fmt(value, var, form):
        multi = var.get("multi") or var.get("includeAll")
        if form is None:            # the data source's own interpolateVariable
            if isinstance(value, list):
                return ",".join(quote_literal(v) for v in value)
            return quote_literal(value) if multi else str(value).replace("'", "''")
        vals = value if isinstance(value, list) else [value]
        if form == "sqlstring":
            return ",".join(quote_literal(v) for v in vals)
        if form == "csv":
            return ",".join(str(v) for v in vals)
        if form == "raw":
            return ",".join(str(v) for v in vals)
        if form == "singlequote":
            return ",".join("'" + str(v).replace("'", "\\'") + "'" for v in vals)
        if form == "doublequote":
            return ",".join('"' + str(v).replace('"', '\\"') + '"' for v in vals)
        errors.append("variable format %r is not one this test knows" % form)
        return "format_error"

    def one(m):
        name = m.group(1) or m.group(2) or m.group(4)
        form = m.group(3) or m.group(6)
        if m.group(5):
            errors.append("${%s.%s}: field paths are not supported" % (name, m.group(5)))
            return m.group(0)
        if name in GLOBALS:
            return GLOBALS[name]
        if name.startswith("__"):
            return m.group(0)        # a macro: the data source's backend expands it
        if name not in variables:
            errors.append("unknown template variable $%s" % name)
            return m.group(0)
        value, var = variables[name]
        return fmt(value, var, form)

    out = VAR_RE.sub(one, sql)
    return out, errors


def expand(sql, variables, t_from, t_to):
    """The SQL Grafana sends to PostgreSQL, and the expansion errors."""
    s, errors = interpolate(sql, variables)
    s, more = expand_macros(s, t_from, t_to)
    errors += more
    if re.search(r"\$\w|\$\{|\[\[", s):
        errors.append("left unexpanded: %s" % ", ".join(
            sorted(set(re.findall(r"\$\{?\w+|\[\[\w+", s)))))
    return s, errors


# ------------------------------------------------------------- running ----

class Reader:
    """psql as the dashboard's login role."""

    def __init__(self, case, role):
        self.case, self.role = case, role

    def run(self, sql):
        """(rows, None) or (None, error text) of one query, rows as exact JSON."""
        return self.run_many([sql])[0]

    def run_many(self, sqls):
        """[(rows, None) or (None, error text)] of queries run one after the other in
        one session (a failed one does not stop the next); one psql for all of them."""
        script = []
        for i, sql in enumerate(sqls):
            body = sql.strip().rstrip(";")
            script.append("\\warn @@%d\n\\echo @@%d\n"
                          "SELECT coalesce(json_agg(q), '[]') FROM (\n%s\n) q;\n" % (i, i, body))
        env = self.case.pg.env(self.case.db)
        env["PGUSER"] = self.role
        p = subprocess.run([self.case.pg.psql_bin, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=0"],
                           input="".join(script).encode("utf-8"), env=env,
                           capture_output=True, timeout=120)
        out = self._split(p.stdout.decode("utf-8", "replace"))
        err = self._split(p.stderr.decode("utf-8", "replace"))
        results = []
        for i in range(len(sqls)):
            e, o = err.get(i, "").strip(), out.get(i, "").strip()
            if e or not o:
                results.append((None, e or "no answer (psql exit %d)" % p.returncode))
            else:
                results.append((h.jload_exact(o), None))
        return results

    @staticmethod
    def _split(text):
        """{query number: its text} from output with an @@N line before each query's."""
        parts, cur = {}, None
        for line in text.split("\n"):
            m = re.fullmatch(r"@@(\d+)", line)
            if m:
                cur = int(m.group(1))
                parts[cur] = ""
            elif cur is not None:
                parts[cur] += line + "\n"
        return parts


def resolve_variables(dash, reader, t_from, t_to, choose):
    """Run the query variables in order, as Grafana does when the board loads; choose
    (name, options, var) -> the value. Returns (variables, problems)."""
    variables, problems = {}, []
    for var in dash.get("templating", {}).get("list", []):
        name = var.get("name")
        if var.get("type") != "query":
            problems.append("variable $%s: type %r (only query variables here)"
                            % (name, var.get("type")))
            continue
        q = var.get("query")
        sql = q.get("rawSql", q.get("query")) if isinstance(q, dict) else q
        s, errors = expand(sql, variables, t_from, t_to)
        if errors:
            problems.append("variable $%s: %s" % (name, "; ".join(errors)))
            continue
        rows, err = reader.run(s)
        if err:
            problems.append("variable $%s: %s\n    SQL: %s" % (name, err, s))
            continue
        options = [str(list(r.values())[0]) for r in rows if list(r.values())[0] is not None]
        variables[name] = (choose(name, options, var), var)
    return variables, problems


def run_board(dash, reader, t_from, t_to, choose, only=None):
    """Every panel's SQL (or only that of panel id `only`), expanded and run:
    ({panel id: rows}, problems)."""
    variables, problems = resolve_variables(dash, reader, t_from, t_to, choose)
    results, todo = {}, []
    for p in all_panels(dash):
        if only is not None and p.get("id") != only:
            continue
        for t in p.get("targets", []):
            what = "panel %s %r" % (p.get("id"), p.get("title"))
            s, errors = expand(t.get("rawSql", ""), variables, t_from, t_to)
            if errors:
                problems.append("%s: %s" % (what, "; ".join(errors)))
            else:
                todo.append((p.get("id"), what, t.get("format"), s))
    for (pid, what, fmt, s), (rows, err) in zip(todo, reader.run_many([x[3] for x in todo])):
        if err:
            problems.append("%s: %s\n    SQL: %s" % (what, err, h.short(s, 2000)))
            continue
        if fmt == "time_series" and rows and "time" not in rows[0]:
            problems.append("%s: a time series query returns no column \"time\" (%s)"
                            % (what, ", ".join(rows[0])))
        results[pid] = rows
    return results, problems


# ---------------------------------------------------------------- data ----

A, B, C = "asst-a", "asst-b", "asst-c"
# (hours before now, assistant, status, lead_qualification (None = key absent), booked)
CALLS = [
    (2, A, "completed", "hot", True),
    (3, A, "completed", "warm", False),
    (5, A, "failed", None, False),
    (26, A, "completed", "cold", True),
    (27, B, "completed", "hot", True),
    (30, B, "completed", "warm", True),
    (50, B, "in-progress", None, None),      # 7: finished later, hot and booked
    (51, B, "completed", "cold", False),     # 8: re-qualified hot later
    (75, C, "completed", "hot", False),
    (76, C, "failed", "cold", False),
    (100, C, "in-progress", None, None),     # 11: still in progress
    (101, None, "completed", "warm", True),  # 12: no assistant
    (1, A, "in-progress", None, None),       # 13: finished later, failed
    (120, C, "completed", "hot", True),      # 14: deleted by the vendor later
    (None, C, "failed", "cold", False),      # 15: at 20:00 UTC three days ago (see below)
]
# Call 15 starts at an hour when the UTC date and the date in a zone 14 hours
# ahead differ: the board must take the range's ends as days of the source's zone.
AHEAD = "Pacific/Kiritimati"


def call_id(n):
    return "call-grafana-%04d" % n


def records(now):
    out = []
    for n, (hours, asst, status, lead, booked) in enumerate(CALLS, 1):
        if hours is None:
            start = (now - dt.timedelta(days=3)).replace(hour=20, minute=0, second=0,
                                                         microsecond=0)
        else:
            start = now - dt.timedelta(hours=hours, minutes=n)
        r = {"id": call_id(n), "contact_id": "contact-%d" % (n % 5),
             "call_type": "inbound" if n % 3 else "outbound", "call_status": status,
             "call_started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if asst is not None:
            r["assistant_id"] = asst
        if status != "in-progress":
            r["duration_seconds"] = 60 + n
            r["call_ended_at"] = (start + dt.timedelta(seconds=60 + n)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            r["appointment_booked"] = booked
        if lead is not None:
            r["lead_qualification"] = lead
        if n % 4 == 0:
            r["sentiment"] = Decimal("0.25")
        out.append(r)
    return out


# The funnel over every assistant (the variable's All) and the last 30 days, after the
# changes: live calls with an assistant are 1-11, 13 and 15 (12 has none, 14 was
# deleted); completed: 1 2 4 5 6 7 8 9; of those hot/warm: 1 2 5 6 7 8 9; and booked:
# 1 5 6 7.
FUNNEL = {"Calls": 13, "Completed": 8, "Qualified (hot/warm)": 7, "Booked": 4}
LIVE_WITH_ASSISTANT = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15]


# ------------------------------------------------------------ scenario ----

def doc_login_lines():
    """The three SQL lines docs/bi.md gives to create a dashboard login."""
    with open(BI_DOC, encoding="utf-8") as f:
        text = f.read()
    lines = [ln.strip() for ln in text.splitlines()
             if re.match(r"\s*(CREATE ROLE grafana |GRANT vozagent_reader TO grafana;|"
                         r"ALTER ROLE grafana SET search_path)", ln)]
    check(len(lines) == 3, "docs/bi.md: expected the three lines that create the grafana "
          "login, found %s" % lines)
    return lines


def all_of(name, options, var):
    """What Grafana selects on load: All for a multi-value variable, else the first."""
    return options if var.get("multi") else (options[0] if options else "")


def scenario():
    dash = load_dashboard()
    problems = static_problems(dash)
    check(not problems, "the board:\n  " + "\n  ".join(problems))
    h.log("board: %d panels, %d queries, static checks pass"
          % (len(all_panels(dash)), len(queries(dash))))

    role = "e2e_grafana_%d" % os.getpid()
    with h.Case("grafana_board", calls=0) as c:
        try:
            c.expect_rc(c.run("migrate"), 0, "migrate")
            c.pg.psql('DROP ROLE IF EXISTS "%s"' % role)
            for line in doc_login_lines():
                c.q(re.sub(r"\bgrafana\b", '"%s"' % role, line))
            reader = Reader(c, role)
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=123000)
            t_from, t_to = now - dt.timedelta(days=30), now

            # An empty mirror: no source, no assistant; every query still runs.
            _, problems = run_board(dash, reader, t_from, t_to, all_of)
            check(not problems, "on an empty mirror:\n  " + "\n  ".join(problems))
            h.log("every query runs on an empty mirror")

            c.sim.add(records=records(now))
            c.expect_rc(c.run("once"), 0, "first pass")
            c.sim.update(ids=[call_id(7)], set={
                "call_status": "completed", "lead_qualification": "hot",
                "appointment_booked": True, "duration_seconds": 300})
            c.sim.update(ids=[call_id(13)], set={"call_status": "failed",
                                                 "duration_seconds": 3})
            c.sim.update(ids=[call_id(8)], set={"lead_qualification": "hot"})
            c.sim.delete(ids=[call_id(14)])
            c.expect_rc(c.run("backfill"), 0, "full pass after the changes")
            c.assert_exact("after the full pass")

            # Grafana's "now" is when the board is shown: after the passes (a
            # second on, so that fixing the microseconds never moves it back
            # before the last pass's observed_at)
            t_to = (dt.datetime.now(dt.timezone.utc) +
                    dt.timedelta(seconds=1)).replace(microsecond=456000)
            t_from = t_to - dt.timedelta(days=30)
            res, problems = run_board(dash, reader, t_from, t_to, all_of)
            check(not problems, "panels failed:\n  " + "\n  ".join(problems))
            by_title = {p["id"]: p["title"] for p in all_panels(dash)}
            for pid, rows in sorted(res.items()):
                h.log("panel %2d %-45s %d row(s)" % (pid, by_title[pid], len(rows)))
            check_results(dash, res)
            check_checker(dash, reader, t_from, t_to)
            check_zone(c, dash, reader, now)
        finally:
            c.pg.psql('DROP ROLE IF EXISTS "%s"' % role, check_rc=False)


def panel_id(dash, view, kind=None):
    """The id of the (first) panel reading vozagent.<view>, of type kind if given."""
    for p in all_panels(dash):
        sql = " ".join(t.get("rawSql", "") for t in p.get("targets", []))
        if re.search(r"\bvozagent\.%s\b" % view, sql) and (kind is None or p["type"] == kind):
            return p["id"]
    raise h.TestFailure("no panel reads vozagent.%s%s" % (view, " as a " + kind if kind else ""))


def check_results(dash, res):
    # every panel but those of history that may be empty returns rows
    for pid, rows in res.items():
        check(rows, "panel %s returns no row on the loaded mirror" % pid)

    daily = res[panel_id(dash, "daily_totals")]
    check(sum(r["completed"] for r in daily) == 9 and sum(r["in progress"] for r in daily) == 1,
          "calls per day by status: %s" % daily)

    funnel = res[panel_id(dash, "lead_funnel")]
    check(len(funnel) == 1 and {k: int(v) for k, v in funnel[0].items()} == FUNNEL,
          "funnel %s, expected %s" % (funnel, FUNNEL))

    rates = {r["assistant"]: r["booking rate"] for r in res[panel_id(dash, "calls_daily")]}
    want = {A: Decimal(2) / 5, B: Decimal(3) / 4, C: Decimal(0) / 4}
    check(set(rates) == set(want) and all(abs(rates[k] - want[k]) < Decimal("1e-9")
                                          for k in want),
          "booking rate per assistant %s, expected %s" % (rates, want))

    heat = res[panel_id(dash, "calls_hourly")]
    check(sum(sum(v for k, v in r.items() if k != "day") for r in heat) == 13,
          "calls by weekday and hour: %s" % heat)

    fresh = res[panel_id(dash, "sync_freshness", "stat")]
    check(len(fresh) == 1 and list(fresh[0].values())[0] is not None
          and list(fresh[0].values())[0] >= 0, "freshness: %s" % fresh)

    durations = res[panel_id(dash, "call_status_durations", "table")]
    got = {r["call_id"]: (r["final_status"], r["still_in_progress"]) for r in durations}
    check(got == {call_id(7): ("completed", False), call_id(11): (None, True),
                  call_id(13): ("failed", False)}, "calls in progress: %s" % got)

    ups = {r["call_id"]: (r["from_qualification"], r["to_qualification"], r["is_upgrade"])
           for r in res[panel_id(dash, "lead_upgrades")]}
    check(ups == {call_id(7): (None, "hot", True), call_id(8): ("cold", "hot", True)},
          "lead changes: %s" % ups)

    fields = {r["field"]: r for r in res[panel_id(dash, "raw_fields")]}
    check(fields.get("sentiment", {}).get("is_column") is False
          and fields.get("call_status", {}).get("is_column") is True,
          "raw fields: %s" % sorted(fields))


def check_checker(dash, reader, t_from, t_to):
    """The checks above can fail: a missing column, a forbidden table, an unknown macro."""
    funnel = panel_id(dash, "lead_funnel")

    broken = copy.deepcopy(dash)
    t = [p for p in all_panels(broken) if p["id"] == funnel][0]["targets"][0]
    t["rawSql"] = t["rawSql"].replace("sum(qualified)", "sum(qualified_no_such_column)")
    _, problems = run_board(broken, reader, t_from, t_to, all_of, only=funnel)
    check(any("qualified_no_such_column" in x and "does not exist" in x for x in problems),
          "a panel naming a missing column passed: %s" % problems)

    broken = copy.deepcopy(dash)
    t = [p for p in all_panels(broken) if p["id"] == funnel][0]["targets"][0]
    t["rawSql"] = "SELECT count(*) AS calls FROM vozagent.calls WHERE source = '$source'"
    check(any("vozagent.calls" in x for x in static_problems(broken)),
          "a panel reading vozagent.calls passed the static check")
    _, problems = run_board(broken, reader, t_from, t_to, all_of, only=funnel)
    check(any("permission denied" in x for x in problems),
          "the reader could read vozagent.calls: %s" % problems)

    broken = copy.deepcopy(dash)
    t = [p for p in all_panels(broken) if p["id"] == funnel][0]["targets"][0]
    check("$__timeFrom()" in t["rawSql"], "the funnel panel no longer uses $__timeFrom()")
    t["rawSql"] = t["rawSql"].replace("$__timeFrom()", "$__timeFromm()")
    _, problems = run_board(broken, reader, t_from, t_to, all_of, only=funnel)
    check(any("unknown macro $__timeFromm" in x for x in problems),
          "an unknown macro passed: %s" % problems)
    h.log("the checker catches a missing column, a forbidden table and an unknown macro")


def check_zone(c, dash, reader, now):
    """With the source's days in a zone 14 hours ahead of UTC, a range ending just after
    call 15 covers call 15's day there: the funnel counts the calls whose day in that
    zone lies in the range's days in that zone (worked out here with zoneinfo)."""
    import zoneinfo
    zone = zoneinfo.ZoneInfo(AHEAD)
    check(c.scalar("SELECT vozagent.configure_source('%s', '%s', true)" % (c.source, AHEAD))
          == "t", "configure_source did not report a new zone")
    starts = {n: h.parse_instant(r["call_started_at"]) for n, r in
              enumerate(records(now), 1)}
    t_to = starts[15] + dt.timedelta(seconds=1)
    t_from = t_to - dt.timedelta(days=30)
    first, last = t_from.astimezone(zone).date(), t_to.astimezone(zone).date()
    want = sum(1 for n in LIVE_WITH_ASSISTANT
               if first <= starts[n].astimezone(zone).date() <= last)
    check(starts[15].astimezone(zone).date() > t_to.date(), "test data: call 15's day in "
          "%s is not after the UTC day of the range's end" % AHEAD)
    variables, problems = resolve_variables(dash, reader, t_from, t_to, all_of)
    check(not problems and variables["zone"][0] == AHEAD,
          "the zone variable: %s %s" % (variables.get("zone"), problems))
    funnel = panel_id(dash, "lead_funnel")
    res, problems = run_board(dash, reader, t_from, t_to, all_of, only=funnel)
    check(not problems, "funnel in %s: %s" % (AHEAD, problems))
    check(int(res[funnel][0]["Calls"]) == want, "funnel in %s up to %s: %s calls, expected %d"
          % (AHEAD, t_to, res[funnel][0]["Calls"], want))
    h.log("in %s the range's ends are days of that zone (%d calls up to %s)"
          % (AHEAD, want, last))


if __name__ == "__main__":
    h.main([("grafana_board", scenario)])
