"""Shared helpers for the end-to-end tests: a fresh database and simulator per case,
the real binary run as a subprocess, and a field-by-field comparison of the mirror
with what the simulator holds.

Environment:
  VOZAGENT_TEST_PGENV  file with PGHOST=, PGPORT=, PGUSER=, PGDATABASE= lines
                       (written by tests/pg/cluster.sh start)
  VOZAGENT_BIN         the vozagent-sync binary (default: <repo>/build/vozagent-sync)
  E2E_KEEP=1           keep the temp directory and database of a failed case
  VOZAGENT_E2E_WRAPPER command line to run the binary under (e.g. "valgrind -q
                       --error-exitcode=99 --leak-check=full")
  E2E_TIME_SCALE       multiply every timeout and time limit (slow wrappers)
  E2E_SEED             seed of the property tests (a number, or "random"); each prints
                       its seed, and on failure the command line that replays it
  E2E_ORDER            run a property test in one order only (oldest_first|newest_first)

Run one script by hand against a cluster of your own:
  tests/pg/cluster.sh start /tmp/pg.env
  VOZAGENT_TEST_PGENV=/tmp/pg.env VOZAGENT_BIN=build/vozagent-sync python3 tests/e2e/test_once.py
  tests/pg/cluster.sh stop /tmp/pg.env
or all of them: ctest --test-dir build -L e2e --output-on-failure
"""

import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIM = os.path.join(REPO, "tests", "sim", "vozagent_sim.py")
T0 = time.monotonic()

# Columns of vozagent.calls that mirror an API field of the same name, by type.
TEXT_COLS = ("contact_id", "assistant_id", "call_type", "call_status",
             "lead_qualification", "call_intent")
NUM_COLS = ("duration_seconds",)
TS_COLS = ("call_started_at", "call_ended_at")
BOOL_COLS = ("appointment_booked",)
MISSING = object()


TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE") or 1)


class TestFailure(AssertionError):
    pass


def scaled(seconds):
    """A timeout or time limit, stretched by E2E_TIME_SCALE."""
    return seconds * TIME_SCALE


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def log(msg):
    print("[%6.2fs] %s" % (time.monotonic() - T0, msg), flush=True)


def short(v, n=160):
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def tail(text, lines=40):
    ls = text.rstrip("\n").split("\n")
    return "\n".join(ls[-lines:]) if text else "(empty)"


def jload_exact(text):
    """JSON with every number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


# ---------------------------------------------------------- timestamps ----

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)$")


def parse_instant(s):
    """An ISO 8601 timestamp with a zone -> aware datetime (UTC), or None if not one."""
    if not isinstance(s, str):
        return None
    m = _TS_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, se, frac, tz = m.groups()
    try:
        t = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(se),
                        int((frac or "0").ljust(6, "0")), tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        t -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return t


# ------------------------------------------------------------- compare ----

def json_diff(a, b, path="raw"):
    """First structural difference between two exact-parsed JSON values, or None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if (type(a) is type(b) and a == b) else "%s: %s != %s" % (
            path, short(a, 60), short(b, 60))
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return None if a == b else "%s: %s != %s" % (path, a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return "%s: key %r missing" % (path, k)
        for k in b:
            if k not in a:
                return "%s: unexpected key %r" % (path, k)
        for k in a:
            d = json_diff(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: array length %d != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = json_diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if type(a) is type(b) and a == b:
        return None
    return "%s: %s != %s" % (path, short(a, 60), short(b, 60))


def expected_typed(col, v):
    """What the typed column should hold for API value v (MISSING = field absent)."""
    if col in TEXT_COLS:
        return v if isinstance(v, str) else None
    if col in NUM_COLS:
        return v if isinstance(v, Decimal) else None
    if col in TS_COLS:
        return parse_instant(v)
    if col in BOOL_COLS:
        return v if isinstance(v, bool) else None
    raise KeyError(col)


def db_typed(col, v):
    if v is None:
        return None
    if col in TS_COLS:
        t = parse_instant(v)
        return t if t is not None else ("unparseable db value", v)
    return v


def mirror_diff(sim_calls, db_rows, source=None, limit=25):
    """Differences between the simulator's calls and vozagent.calls rows, as strings.

    Every typed column is compared with the record's field (numbers as Decimal,
    timestamps as instants, absent and null both meaning SQL NULL, a value of the
    wrong type meaning NULL), raw structurally with exact numbers; rows the
    simulator does not list must have deleted_at set. At most `limit` lines,
    plus a count of the rest."""
    diffs = []
    sim = {}
    for rec in sim_calls:
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            sim[rec["id"]] = rec
    rows = {r.get("id"): r for r in db_rows}
    for cid, rec in sim.items():
        row = rows.get(cid)
        if row is None:
            diffs.append("%s: listed by the API, missing from vozagent.calls" % cid)
            continue
        if row.get("deleted_at") is not None:
            diffs.append("%s: listed by the API but deleted_at = %s" % (cid, row["deleted_at"]))
        for col in TEXT_COLS + NUM_COLS + TS_COLS + BOOL_COLS:
            if col not in row:
                diffs.append("%s: vozagent.calls has no column %s" % (cid, col))
                continue
            exp = expected_typed(col, rec.get(col))
            got = db_typed(col, row[col])
            same = (exp is None and got is None) or (
                exp is not None and got is not None and type(exp) is type(got) and exp == got)
            if not same:
                diffs.append("%s: %s = %s, API has %s" % (
                    cid, col, short(row[col], 80),
                    "(absent)" if col not in rec else short(jdumps(rec[col]), 80)))
        raw = row.get("raw", MISSING)
        if raw is MISSING:
            diffs.append("%s: vozagent.calls has no column raw" % cid)
        else:
            d = json_diff(rec, raw)
            if d:
                diffs.append("%s: API record != %s" % (cid, d))
        if source is not None and row.get("source") != source:
            diffs.append("%s: source = %r, expected %r" % (cid, row.get("source"), source))
        for col in ("first_seen_at", "updated_at"):
            if row.get(col) is None:
                diffs.append("%s: %s is null" % (cid, col))
    for cid, row in rows.items():
        if cid not in sim and row.get("deleted_at") is None:
            diffs.append("%s: in vozagent.calls (live), not listed by the API" % cid)
    if len(diffs) > limit:
        diffs = diffs[:limit] + ["... and %d more differences" % (len(diffs) - limit)]
    return diffs


def dumps_exact(v):
    """JSON text of v, Decimal numbers written with every digit."""
    if isinstance(v, Decimal):
        check(v.is_finite(), "non-finite number %s" % v)
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dumps_exact(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(dumps_exact(x) for x in v) + "]"
    return json.dumps(v)


def jdumps(v):
    def default(o):
        if isinstance(o, Decimal):
            return float(o)
        raise TypeError
    if isinstance(v, Decimal):
        return str(v)
    return json.dumps(v, ensure_ascii=False, default=default)


# ---------------------------------------------------------- PostgreSQL ----

def find_tool(name):
    p = "/usr/lib/postgresql/15/bin/" + name
    if os.access(p, os.X_OK):
        return p
    p = shutil.which(name)
    check(p is not None, "%s not found (PostgreSQL 15 client tools needed)" % name)
    return p


class Role:
    """A login role of the shared cluster, dropped (with its grants) at the end."""

    def __init__(self, pg, prefix):
        self.pg = pg
        self.name = "%s_%d" % (prefix, os.getpid())

    def __enter__(self):
        self.drop()
        self.pg.psql('CREATE ROLE "%s" LOGIN' % self.name)
        return self

    def __exit__(self, *exc):
        self.drop()
        return False

    def drop(self):
        # its grants live in the case's database, dropped before this runs
        self.pg.psql('DROP ROLE IF EXISTS "%s"' % self.name, check_rc=False)


class PG:
    """The test cluster described by the VOZAGENT_TEST_PGENV file."""

    def __init__(self, envfile=None):
        envfile = envfile or os.environ.get("VOZAGENT_TEST_PGENV")
        check(envfile, "VOZAGENT_TEST_PGENV is not set (a file written by "
                       "tests/pg/cluster.sh start ENVFILE)")
        check(os.path.exists(envfile), "VOZAGENT_TEST_PGENV file %s does not exist" % envfile)
        self.vars = {}
        with open(envfile) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                k = k.strip()
                if k.startswith("export "):
                    k = k[len("export "):].strip()
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                self.vars[k] = v
        for k in ("PGHOST", "PGPORT", "PGUSER"):
            check(k in self.vars, "%s missing from %s" % (k, envfile))
        self.psql_bin = find_tool("psql")

    def env(self, db=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(self.vars)
        # UTF8 for the harness's own psql only, whose output is decoded as UTF-8; the
        # binary's environment (Case.env) carries no PG* variable but those a test sets
        env.update(PGTZ="UTC", PGCLIENTENCODING="UTF8", PGCONNECT_TIMEOUT="10",
                   PGAPPNAME="vozagent-e2e")
        env["PGDATABASE"] = db or self.vars.get("PGDATABASE", "postgres")
        return env

    def conninfo(self, db):
        def q(v):
            if v and not re.search(r"[\s'\\]", v):
                return v
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "host=%s port=%s user=%s dbname=%s" % (
            q(self.vars["PGHOST"]), q(self.vars["PGPORT"]), q(self.vars["PGUSER"]), q(db))

    def psql(self, sql, db=None, check_rc=True):
        p = subprocess.run([self.psql_bin, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           env=self.env(db), capture_output=True, timeout=60)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if check_rc and p.returncode != 0:
            raise TestFailure("psql failed (rc %d) on %s:\n%s"
                              % (p.returncode, short(sql, 300), err))
        return out if p.returncode == 0 else None

    def json(self, sql, db=None):
        return jload_exact(self.psql(sql, db))

    def scalar(self, sql, db=None):
        return self.psql(sql, db).strip()

    def create_db(self, name):
        self.psql('CREATE DATABASE "%s"' % name)

    def drop_db(self, name):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, check_rc=False)


# ----------------------------------------------------------- simulator ----

class Sim:
    """One simulator process on a free port, driven through /_control/."""

    def __init__(self, workdir, token, seed=1, calls=100, order="oldest_first"):
        self.workdir, self.token = workdir, token
        portfile = os.path.join(workdir, "sim.port")
        self.logpath = os.path.join(workdir, "sim.log")
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--port-file", portfile, "--token", token,
             "--seed", str(seed), "--calls", str(calls), "--order", order, "--quiet"],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(portfile):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TestFailure("simulator did not start:\n" + self.log_tail())
            time.sleep(0.02)
        with open(portfile) as f:
            self.port = int(f.read().strip())
        self.base = "http://127.0.0.1:%d" % self.port
        self.api_url = self.base + "/v1"

    def log_tail(self):
        try:
            with open(self.logpath, encoding="utf-8", errors="replace") as f:
                return tail(f.read())
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()

    def control(self, method, path, body=None, exact=False):
        data = None if body is None else dumps_exact(body).encode("utf-8")
        req = urllib.request.Request(self.base + "/_control/" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            raise TestFailure("simulator control %s %s failed: %s %s" % (
                method, path, e.code, e.read().decode("utf-8", "replace")))
        return jload_exact(text) if exact else json.loads(text, parse_float=Decimal)

    def calls(self):
        """Every call the API lists, in API order, numbers exact."""
        return self.control("GET", "calls", exact=True)

    def add(self, **body):
        return self.control("POST", "add", body)["added"]

    def finish(self, **body):
        return self.control("POST", "finish", body)["changed"]

    def update(self, **body):
        return self.control("POST", "update", body)["changed"]

    def delete(self, **body):
        return self.control("POST", "delete", body)["deleted"]

    def config(self, **body):
        return self.control("POST", "config", body)["config"]

    def state(self):
        return self.control("GET", "state")

    def requests(self):
        return self.control("GET", "requests")["requests"]

    def clear_requests(self):
        return self.control("POST", "requests/clear", {})["cleared"]

    # -- issue 3: regenerating the data, the live mutator, faults --

    def reset(self, **body):
        """Regenerate the data (seed, calls, in_progress_recent, in_progress_stuck, ...)."""
        return self.control("POST", "reset", body)["count"]

    def mutator(self, **body):
        """Configure the live mutator ({"off": True} stops it); returns its report."""
        return self.control("POST", "mutator", body)

    def mutator_report(self):
        return self.control("GET", "mutator")

    def faults(self, **body):
        return self.control("POST", "faults", body)

    def last_seq(self):
        """seq of the last request logged (0 if none): api_log_since(.., last_seq())."""
        return max([x["seq"] for x in self.requests()] or [0])


# ---------------------------------------------------------- the binary ----

def binary():
    b = os.environ.get("VOZAGENT_BIN") or os.path.join(REPO, "build", "vozagent-sync")
    check(os.access(b, os.X_OK), "binary %s not found or not executable (set VOZAGENT_BIN)" % b)
    return b


class Result:
    """One finished run of the binary; args are the arguments the test gave."""

    def __init__(self, cmd, args, rc, out, err, elapsed):
        self.cmd, self.args, self.rc, self.out, self.err, self.elapsed = \
            cmd, list(args), rc, out, err, elapsed

    def __str__(self):
        return "$ %s\n-> exit %s after %.2fs\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(self.cmd), self.rc, self.elapsed, tail(self.out), tail(self.err))


# One page in flight and one page per commit: the daemon as it paged before it had a
# pipeline. Tests whose assertions count requests one by one (a fault planted on
# request #N, pages fetched in order, a kill between two page commits) set
#     h.DEFAULT_ENV.update(h.SEQUENTIAL)
# at import; test_pipeline.py runs the same kinds of faults against the pipeline.
SEQUENTIAL = {"VOZAGENT_CONCURRENCY": "1", "VOZAGENT_BATCH_ROWS": "1"}
# Settings every Case of this test script starts from (its own env= wins).
DEFAULT_ENV = {}


class Case:
    """One scenario: a fresh database, a fresh simulator, a clean environment.

    with Case("backfill_old", order="oldest_first", calls=750) as c:
        r = c.run("backfill"); c.expect_rc(r, 0); c.assert_exact("after backfill")
    """
    counter = 0

    def __init__(self, name, order="oldest_first", seed=1, calls=100, source="e2e",
                 page_size=None, env=None):
        Case.counter += 1
        self.name, self.order, self.seed, self.ncalls = name, order, seed, calls
        self.source, self.page_size, self.extra_env = source, page_size, dict(env or {})
        self.db = re.sub(r"[^a-z0-9_]", "_", ("e2e_%s_%d_%d" % (name, os.getpid(),
                                                                 Case.counter)).lower())[:63]
        self.token = "e2e-key-" + os.urandom(9).hex()
        self.secrets = [self.token]
        self.history = []
        self.procs = []
        self.sim = None
        self.pg = None
        self.tmp = None

    def __enter__(self):
        log("--- case %s (order %s, %d calls, db %s)"
            % (self.name, self.order, self.ncalls, self.db))
        self.tmp = tempfile.mkdtemp(prefix="vozagent-e2e-%s-" % self.name)
        try:
            self.pg = PG()
            self.pg.drop_db(self.db)
            self.pg.create_db(self.db)
            self.sim = Sim(self.tmp, self.token, self.seed, self.ncalls, self.order)
            self.config_path = self.write_config("# e2e: settings come from VOZAGENT_* variables\n")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, etype, exc, tb):
        running = []   # spawned and not waited for: their logs are not in history
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
                running.append(p)
        failed = etype is not None
        if failed:
            print("=== case %s failed; context:" % self.name, flush=True)
            for r in self.history[-3:]:
                print(r, flush=True)
            for p in running:
                print("--- still running at the failure, killed: %s\n%s"
                      % (" ".join(p.e2e_args), tail(self._read("bin%d.err" % p.e2e_n), 30)),
                      flush=True)
            if self.sim:
                print("--- simulator log:\n" + self.sim.log_tail(), flush=True)
        if self.sim:
            self.sim.stop()
        keep = failed and os.environ.get("E2E_KEEP")
        if keep:
            print("kept %s and database %s" % (self.tmp, self.db), flush=True)
            return False
        if self.pg:
            self.pg.drop_db(self.db)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    # -- files and environment --

    def write_config(self, text, name="vozagent-sync.conf"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VOZAGENT_", "PG")) and k != "CREDENTIALS_DIRECTORY"}
        env.update(VOZAGENT_API_URL=self.sim.api_url, VOZAGENT_API_TOKEN=self.token,
                   VOZAGENT_DATABASE_URL=self.pg.conninfo(self.db),
                   VOZAGENT_SOURCE=self.source, VOZAGENT_HTTP_TIMEOUT="10s")
        if self.page_size is not None:
            env["VOZAGENT_PAGE_SIZE"] = str(self.page_size)
        for k, v in (list(DEFAULT_ENV.items()) + list(self.extra_env.items()) +
                     list((extra or {}).items())):
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def cmd(self, args, config=None, raw=False):
        wrapper = shlex.split(os.environ.get("VOZAGENT_E2E_WRAPPER", ""))
        if raw:
            return wrapper + [binary()] + list(args)
        return wrapper + [binary(), "-c", config or self.config_path] + list(args)

    # -- running the binary --

    def run(self, *args, timeout=120, env=None, config=None, raw=False):
        """Run the binary to completion; raw=True passes args without -c."""
        cmd = self.cmd(args, config, raw)
        timeout = scaled(timeout)
        t = time.monotonic()
        try:
            p = subprocess.run(cmd, env=self.env(env), capture_output=True, timeout=timeout)
            r = Result(cmd, args, p.returncode, p.stdout.decode("utf-8", "replace"),
                       p.stderr.decode("utf-8", "replace"), time.monotonic() - t)
        except subprocess.TimeoutExpired as e:
            r = Result(cmd, args, "timeout", (e.stdout or b"").decode("utf-8", "replace"),
                       (e.stderr or b"").decode("utf-8", "replace"), time.monotonic() - t)
            self.history.append(r)
            raise TestFailure("%s did not finish within %ss" % (" ".join(args), timeout))
        self.history.append(r)
        log("ran %s -> %s (%.2fs)" % (" ".join(args), r.rc, r.elapsed))
        self.check_secrets(r)
        return r

    def spawn(self, *args, env=None, config=None):
        """Start the binary in the background; finish it with wait()."""
        cmd = self.cmd(args, config)
        n = len(self.procs)
        out = open(os.path.join(self.tmp, "bin%d.out" % n), "wb")
        err = open(os.path.join(self.tmp, "bin%d.err" % n), "wb")
        p = subprocess.Popen(cmd, env=self.env(env), stdout=out, stderr=err)
        out.close()
        err.close()
        p.e2e_cmd, p.e2e_args, p.e2e_n, p.e2e_t = cmd, args, n, time.monotonic()
        self.procs.append(p)
        log("spawned %s (pid %d)" % (" ".join(args), p.pid))
        return p

    def wait(self, p, timeout):
        """Wait for a spawned binary; on timeout kill it and fail."""
        timeout = scaled(timeout)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        r = Result(p.e2e_cmd, p.e2e_args, rc, self._read("bin%d.out" % p.e2e_n),
                   self._read("bin%d.err" % p.e2e_n), time.monotonic() - p.e2e_t)
        self.history.append(r)
        check(rc != "timeout", "%s did not exit within %ss" % (" ".join(p.e2e_args), timeout))
        self.check_secrets(r)
        return r

    def _read(self, name):
        with open(os.path.join(self.tmp, name), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check_secrets(self, r):
        for s in self.secrets:
            check(s not in r.out and s not in r.err,
                  "the API key appears in the output of %s" % " ".join(r.args))

    def expect_rc(self, r, rc, what=""):
        check(r.rc == rc, "%s: expected exit %s, got %s%s" % (
            " ".join(r.args) or "(no arguments)", rc, r.rc,
            (" (" + what + ")") if what else ""))

    # -- the database --

    def q(self, sql):
        return self.pg.psql(sql, self.db)

    def qjson(self, sql):
        return self.pg.json(sql, self.db)

    def scalar(self, sql):
        return self.pg.scalar(sql, self.db)

    def has_table(self, name):
        return self.scalar("select to_regclass('%s') is not null" % name) == "t"

    def count_calls(self):
        return int(self.scalar("select count(*) from vozagent.calls")) \
            if self.has_table("vozagent.calls") else 0

    def mirror_rows(self):
        return self.qjson("select coalesce(json_agg(c), '[]') from "
                          "(select *, xmin::text as _xmin from vozagent.calls) c")

    def sync_runs(self):
        return self.qjson("select coalesce(json_agg(r order by r.id), '[]') "
                          "from vozagent.sync_runs r where source = '%s'" % self.source)

    def row_versions(self):
        """id -> xmin/updated_at of every row: unchanged iff the row was not rewritten."""
        rows = self.qjson("select coalesce(json_object_agg(id, xmin::text || ' ' || "
                          "coalesce(updated_at::text, '-')), '{}') from vozagent.calls")
        return rows

    def diff(self):
        return mirror_diff(self.sim.calls(), self.mirror_rows(), self.source)

    def assert_exact(self, when):
        d = self.diff()
        check(not d, "mirror differs from the API %s:\n  %s" % (when, "\n  ".join(d)))
        log("mirror exact %s (%d calls)" % (when, self.count_calls()))

    def wait_exact(self, when, timeout=30, interval=0.2, proc=None):
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                d = self.diff()
            except TestFailure:          # schema not created yet
                d = ["(schema not there yet)"]
            if not d:
                log("mirror exact %s" % when)
                return
            if proc is not None and proc.poll() is not None:
                raise TestFailure("the daemon exited (%s) while waiting for the mirror %s"
                                  % (proc.returncode, when))
            if time.monotonic() > deadline:
                raise TestFailure("mirror not exact %s within %ss:\n  %s"
                                  % (when, timeout, "\n  ".join(d)))
            time.sleep(interval)

    def sync_state(self):
        """This case's sync_state row as a dict (None before the first commit)."""
        if not self.has_table("vozagent.sync_state"):
            return None
        rows = self.qjson("select coalesce(json_agg(s), '[]') from vozagent.sync_state s "
                          "where source = '%s'" % self.source)
        return rows[0] if rows else None

    def last_run(self):
        runs = self.sync_runs()
        return runs[-1] if runs else None

    def assert_exact_but_deleted(self, when, deleted_ids, calls=None):
        """The mirror equals the API, except that calls the API deleted (deleted_ids) may
        still be live rows: only a complete backfill marks deletions. Returns the ids of
        those extra live rows."""
        calls = self.sim.calls() if calls is None else calls
        listed = {x["id"] for x in calls}
        rows = self.mirror_rows()
        extra = {r["id"] for r in rows if r["id"] not in listed and r.get("deleted_at") is None}
        unexplained = sorted(extra - set(deleted_ids))
        check(not unexplained, "%s: %d live rows the API does not list and nobody deleted, "
              "e.g. %s" % (when, len(unexplained), unexplained[:5]))
        d = mirror_diff(calls, [r for r in rows if r["id"] not in extra], self.source)
        check(not d, "mirror differs from the API %s:\n  %s" % (when, "\n  ".join(d)))
        log("mirror exact %s (%d calls listed; %d live rows of deleted calls)"
            % (when, len(listed), len(extra)))
        return extra

    def wait_for(self, what, cond, timeout=30, interval=0.1):
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while not cond():
            check(time.monotonic() < deadline,
                  "timed out after %ss waiting for %s" % (timeout, what))
            time.sleep(interval)


def api_log_since(reqs, seq_after=0):
    return [r for r in reqs if r["seq"] > seq_after and r["path"].rstrip("/").endswith("/calls")]


# -------------------------------------------------------------- running ----

def main(scenarios):
    """Run scenarios [(name, fn)], all of them even if some fail; exit 1 on any failure."""
    failed = []
    for name, fn in scenarios:
        log("=== %s" % name)
        try:
            fn()
            log("ok %s" % name)
        except TestFailure as e:
            failed.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
        except Exception:
            failed.append(name)
            print("ERROR %s:\n%s" % (name, traceback.format_exc()), flush=True)
    log("%d scenario(s), %d failed%s" % (len(scenarios), len(failed),
                                          (": " + ", ".join(failed)) if failed else ""))
    sys.exit(1 if failed else 0)


def both_orders(fn, name):
    """[(name_oldest_first, ...), (name_newest_first, ...)] for main(); E2E_ORDER
    (oldest_first or newest_first) keeps one."""
    only = os.environ.get("E2E_ORDER", "").strip()
    return [("%s[%s]" % (name, o), (lambda o=o: fn(o))) for o in ("oldest_first", "newest_first")
            if not only or o == only]


def terminate(p, sig=signal.SIGTERM):
    if p.poll() is None:
        os.kill(p.pid, sig)


# ------------------------------------------------- property tests (issue 3) ----

def seed_for(default):
    """The seed of a property scenario: E2E_SEED (a number, or "random") overrides the
    scenario's fixed default."""
    v = os.environ.get("E2E_SEED", "").strip()
    if not v:
        return default
    if v == "random":
        return int.from_bytes(os.urandom(4), "big")
    return int(v)


def property_orders(fn, name, default_seed):
    """Like both_orders, for a seeded scenario fn(order, seed): the seed is printed first,
    and again with the command that replays it when the scenario fails. E2E_ORDER
    (oldest_first or newest_first) runs one order only."""
    only = os.environ.get("E2E_ORDER", "").strip()
    script = os.path.basename(sys.argv[0])

    def one(order):
        seed = seed_for(default_seed)
        log("%s[%s]: seed %d" % (name, order, seed))
        try:
            fn(order, seed)
        except BaseException:
            print("*** %s[%s] failed with seed %d; replay: E2E_SEED=%d E2E_ORDER=%s python3 %s"
                  % (name, order, seed, seed, order, script), flush=True)
            raise
    return [("%s[%s]" % (name, o), (lambda o=o: one(o)))
            for o in ("oldest_first", "newest_first") if not only or only == o]


def scan_pages(n, page_size):
    """Most pages one scan of a listing of n calls can take: pages overlap by one call
    (page_size > 1) and the scan ends with a page shorter than page_size."""
    if page_size <= 1:
        return n + 1
    return n // (page_size - 1) + 1


def started_us(rec):
    """call_started_at of an API record as microseconds since the epoch (None if absent)."""
    t = parse_instant(rec.get("call_started_at"))
    if t is None:
        return None
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def table_writes(pg, db, table="calls"):
    """(n_tup_ins, n_tup_upd, n_tup_del) of vozagent.<table>, read from a new session.
    Statistics reach the cumulative stats system when a backend reports them (at the
    latest when it exits): wait for the daemon's sessions to be gone first."""
    out = pg.psql("select pg_stat_clear_snapshot(); select n_tup_ins || ' ' || n_tup_upd || "
                  "' ' || n_tup_del from pg_stat_user_tables where schemaname = 'vozagent' "
                  "and relname = '%s'" % table, db).split()
    return tuple(int(x) for x in out[-3:])


def wait_daemon_sessions_gone(pg, db, timeout=10):
    """Until no session of the daemon (application_name vozagent-sync) is open on db."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        n = int(pg.scalar("select count(*) from pg_stat_activity where datname = '%s' "
                          "and application_name = 'vozagent-sync'" % db))
        if n == 0:
            return
        check(time.monotonic() < deadline, "the daemon's database session is still open "
              "%ss after it exited" % timeout)
        time.sleep(0.05)



# ------------------------------------------------------- the BI layer (issue 10) ----

def binary_knows_key(case, key, value):
    """Whether the binary's configuration has `key` (a file line `key = value` passes
    `-n`, instead of "unknown key")."""
    path = case.write_config("%s = %s\n" % (key, value), name="probe-%s.conf" % key)
    r = case.run("-n", "once", config=path)
    if "unknown key '%s'" % key in r.err:
        return False
    check(r.rc == 0, "%s = %s refused by -n once:\n%s" % (key, value, r))
    return True


def set_report_zone(case, zone):
    """Make `zone` the source's report_time_zone for every pass of case: through the
    report_time_zone key (VOZAGENT_REPORT_TIME_ZONE) when the binary has it, else by
    calling vozagent.configure_source (after a `migrate`) as the owner. Returns
    "config" or "sql"."""
    if binary_knows_key(case, "report_time_zone", zone):
        case.extra_env["VOZAGENT_REPORT_TIME_ZONE"] = zone
        log("report_time_zone %s through the configuration" % zone)
        return "config"
    case.expect_rc(case.run("migrate"), 0, "migrate")
    case.q("SELECT vozagent.configure_source('%s', '%s', true)" % (case.source, zone))
    log("report_time_zone %s by vozagent.configure_source (the binary has no "
        "report_time_zone key)" % zone)
    return "sql"


def check_report_zone(case, zone, how):
    """The source's sync_state says zone; in "sql" mode a sync_state row created by the
    first pass after configure_source ran is set (and its rollup rebuilt) now."""
    got = case.scalar("SELECT report_time_zone FROM vozagent.sync_state WHERE source = '%s'"
                      % case.source)
    if got != zone and how == "sql":
        case.q("SELECT vozagent.configure_source('%s', '%s', true)" % (case.source, zone))
        got = case.scalar("SELECT report_time_zone FROM vozagent.sync_state "
                          "WHERE source = '%s'" % case.source)
    check(got == zone, "sync_state.report_time_zone = %r, expected %r (set through %s)"
          % (got, zone, how))
