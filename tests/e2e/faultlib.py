"""Helpers for the issue 4 ("Hostile world") end-to-end tests, on top of harness.py.

- fault injection through the simulator's /_control/faults: a queue for the first
  request, or for the n-th request of a running pass (fault_at_request);
- the simulator's request log: API requests, gaps between them;
- the daemon's log: "retrying in X s" delays, one line per message;
- key secrecy: assert_secret_free() checks every output of a case and its database;
- sd_notify: a datagram socket to hand the daemon as $NOTIFY_SOCKET;
- a private PostgreSQL cluster (tests/pg/cluster.sh) a test may stop and restart
  without disturbing the shared one other tests use.
"""

import contextlib
import os
import pwd
import re
import socket
import subprocess
import time

import harness as h
from harness import check

# a log message (plain or journald style), or a line from a wrapper such as valgrind
LOG_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (debug|info|warning|error): |"
                      r"<\d>|==\d+==)")
RETRY = re.compile(r"retrying in (\d+(?:\.\d+)?)s")


# ------------------------------------------------------------ simulator ----

def faults(sim, **body):
    return sim.control("POST", "faults", body)


def clear_faults(sim):
    return faults(sim, clear=True)


def injected(sim):
    return sim.control("GET", "faults")["injected"]


def api_reqs(sim, after=0):
    """The simulator's log of /v1/calls requests (seq > after), oldest first."""
    return h.api_log_since(sim.requests(), after)


def last_seq(sim):
    return max([x["seq"] for x in sim.requests()] or [0])


def describe(reqs):
    return ", ".join("#%s off=%s %s%s" % (x["seq"], x["offset"], x["status"],
                                         "(%s)" % x["fault"] if x["fault"] else "")
                     for x in reqs)


def fault_at_request(c, cmd, n, queue, env=None, timeout=60, config=None, slow_ms=400):
    """Run `cmd` (spawned) and give its n-th API request (1-based) the faults in
    `queue` (that request gets queue[0], its retries the rest). Requests 1..n-1
    have their bodies sent slowly (chunk_delay_ms) so the queue is in place before
    request n is sent; the queue is posted once request n-1 is logged, i.e. while
    its body is still on the wire. Returns (Result, requests of this run)."""
    c.sim.clear_requests()
    clear_faults(c.sim)
    if n <= 1:
        faults(c.sim, queue=queue)
        r = c.run(cmd, env=env, timeout=timeout, config=config)
        return r, api_reqs(c.sim)
    c.sim.config(chunk_delay_ms=int(h.scaled(slow_ms)))
    try:
        p = c.spawn(cmd, env=env, config=config)
        deadline = time.monotonic() + h.scaled(30)
        while len(api_reqs(c.sim)) < n - 1:
            if p.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        faults(c.sim, queue=queue)
    finally:
        c.sim.config(chunk_delay_ms=0)
    r = c.wait(p, timeout)
    reqs = api_reqs(c.sim)
    hit = [x for x in reqs if x["fault"]]
    check(len(reqs) >= n and reqs[n - 1]["fault"] == str(_kind(queue[0])),
          "test set-up: the fault %s was meant for API request #%d of %s; requests: %s"
          % (_kind(queue[0]), n, cmd, describe(reqs)))
    check(len(hit) == len(queue) or r.rc != 0,
          "test set-up: %d of %d queued faults were used: %s" % (len(hit), len(queue),
                                                                describe(reqs)))
    return r, reqs


def _kind(f):
    return f["kind"] if isinstance(f, dict) else f


def gaps(reqs):
    """Seconds between consecutive requests' arrivals."""
    return [b["time"] - a["time"] for a, b in zip(reqs, reqs[1:])]


# ------------------------------------------------------- daemon output ----

def retry_delays(text):
    return [float(x) for x in RETRY.findall(text)]


class Soft:
    """Failures collected while a scenario goes on with its other checks; raised at
    the end (so one wrong detail does not hide the rest)."""

    def __init__(self):
        self.msgs = []

    def check(self, cond, msg):
        if not cond:
            print("SOFT FAIL: %s" % msg, flush=True)
            self.msgs.append(msg)

    def done(self):
        check(not self.msgs, "%d check(s) failed:\n  %s" % (len(self.msgs),
                                                          "\n  ".join(self.msgs)))


def check_log_lines(r, what="", soft=None):
    """Every line the daemon wrote (past configuration) is one complete log message:
    a message split over two lines reaches journald as two."""
    bad = [x for x in r.err.split("\n") if x and not LOG_LINE.match(x)]
    (soft.check if soft else check)(
        not bad, "%s: stderr lines that are not log messages (a message split over "
        "lines?): %s" % (what or " ".join(r.args), [h.short(x, 200) for x in bad[:3]]))


def wait_log(c, p, pattern, timeout=20):
    """Wait until the spawned binary p writes a stderr line matching pattern; the match."""
    path = os.path.join(c.tmp, "bin%d.err" % p.e2e_n)
    deadline = time.monotonic() + h.scaled(timeout)
    while True:
        m = re.search(pattern, _read(path))
        if m:
            return m
        check(p.poll() is None, "the daemon exited (%s) before logging %r:\n%s"
              % (p.returncode, pattern, h.tail(_read(path), 5)))
        check(time.monotonic() < deadline, "no %r in the daemon's log within %ss:\n%s"
              % (pattern, timeout, h.tail(_read(path), 5)))
        time.sleep(0.05)


def check_backoff(delays, what):
    """Exponential backoff with full jitter, 0.5 s base: retry k waits at most
    0.5 s * 2^k (k = 1.. as implemented: a first retry within 1 s)."""
    for k, d in enumerate(delays, 1):
        cap = 0.5 * 2 ** k
        check(d <= cap + 0.05, "%s: retry %d waited %.1fs, more than the %.1fs backoff cap "
              "(delays %s)" % (what, k, d, cap, delays))


# --------------------------------------------------------------- secrets ----

def assert_secret_free(c, extra=(), what=""):
    """No API key the case used (c.secrets) in any output of the binary in this case,
    in `extra` texts (notify messages, ...), or anywhere in schema vozagent: pg_dump
    of the schema and data, and every column of every table cast to text."""
    texts = [("output of %s" % " ".join(r.args), r.out + r.err) for r in c.history]
    texts += [("extra text %d" % i, t) for i, t in enumerate(extra)]
    texts.append(("simulator log", _read(c.sim.logpath)))
    for name, text in texts:
        for s in c.secrets:
            check(s not in text, "%s: an API key appears in the %s" % (what, name))
    for s in c.secrets:
        for r in c.sim.requests():
            check(s not in repr(r["params"]) and s not in r["path"],
                  "%s: the API key was sent in a URL: %s" % (what, r["path"]))
    if c.scalar("select to_regnamespace('vozagent') is not null") != "t":
        h.log("secrets: %d outputs clean; no schema vozagent" % len(texts))
        return
    dump = subprocess.run([h.find_tool("pg_dump"), "-n", "vozagent"], env=c.pg.env(c.db),
                          capture_output=True, timeout=60)
    check(dump.returncode == 0, "pg_dump failed: %s" % dump.stderr[-500:])
    text = dump.stdout.decode("utf-8", "replace")
    for s in c.secrets:
        check(s not in text, "%s: an API key is stored in the database (pg_dump)" % what)
    cols = c.q("select table_name || chr(9) || column_name from information_schema.columns "
               "where table_schema = 'vozagent' and table_name in (select table_name from "
               "information_schema.tables where table_schema = 'vozagent' "
               "and table_type = 'BASE TABLE')").split("\n")
    cols = [x.split("\t") for x in cols if x]
    conds = []
    for s in c.secrets:
        for t, col in cols:
            conds.append("(select count(*) from vozagent.%s where position('%s' in "
                         "%s::text) > 0)" % (_ident(t), s, _ident(col)))
    if conds:
        n = int(c.scalar("select " + " + ".join(conds)))
        check(n == 0, "%s: an API key is in %d value(s) of schema vozagent" % (what, n))
    h.log("secrets: no key in %d outputs, pg_dump (%d bytes) or %d columns"
          % (len(texts), len(text), len(cols)))


def _ident(name):
    return '"' + name.replace('"', '""') + '"'


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------------- database ----

def reset_mirror(c):
    """Forget everything the daemon wrote (a fresh start for the next scenario)."""
    c.q("DROP SCHEMA IF EXISTS vozagent CASCADE")
    c.sim.clear_requests()
    clear_faults(c.sim)


def state(c):
    rows = c.qjson("select coalesce(json_agg(s), '[]') from vozagent.sync_state s "
                   "where source = '%s'" % c.source)
    return rows[0] if rows else None


def rejects(c):
    return c.qjson("select coalesce(json_agg(r order by r.id), '[]') from vozagent.rejects r")


def mirror_ids(c):
    return set(c.qjson("select coalesce(json_agg(id), '[]') from vozagent.calls"))


def daemon_backends(c):
    return c.q("select pid from pg_stat_activity where application_name = 'vozagent-sync' "
               "and datname = '%s'" % c.db).split()


# ------------------------------------------------------------ sd_notify ----

class Notify:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.msgs = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.msgs
            m = data.decode("utf-8", "replace")
            h.log("sd_notify: %s" % m.replace("\n", " | "))
            self.msgs.append(m)

    def lines(self):
        return [x for m in self.poll() for x in m.split("\n")]

    def has(self, line):
        return line in self.lines()

    def wait_for(self, line, timeout, proc=None):
        deadline = time.monotonic() + h.scaled(timeout)
        while not self.has(line):
            check(proc is None or proc.poll() is None,
                  "the daemon exited (%s) before sending %s" % (proc and proc.returncode, line))
            check(time.monotonic() < deadline, "no %s on $NOTIFY_SOCKET within %ss (got %s)"
                  % (line, timeout, self.msgs))
            time.sleep(0.05)

    def close(self):
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


# ------------------------------------------------- a private PostgreSQL ----

class Cluster:
    """A throwaway PostgreSQL cluster of this test alone (tests/pg/cluster.sh), so it
    can be stopped and restarted while other tests use the shared one."""

    def __init__(self, workdir):
        self.envfile = os.path.join(workdir, "private-pg.env")
        self.port = str(55000 + os.getpid() % 5000)

    def __enter__(self):
        t = time.monotonic()
        env = dict(os.environ, VOZAGENT_PG_PORT=self.port)
        p = subprocess.run(["bash", os.path.join(h.REPO, "tests", "pg", "cluster.sh"), "start",
                            self.envfile], env=env, capture_output=True, timeout=120)
        check(p.returncode == 0, "cannot start a private cluster:\n%s"
              % p.stderr.decode("utf-8", "replace")[-2000:])
        self.vars = h.PG(self.envfile).vars
        self.datadir = self.vars["VOZAGENT_PG_DATADIR"]
        self.logfile = os.path.join(os.path.dirname(self.datadir), "postgresql.log")
        h.log("private PostgreSQL cluster started in %.1fs (%s)" % (time.monotonic() - t,
                                                                   self.datadir))
        return self

    def __exit__(self, *exc):
        subprocess.run(["bash", os.path.join(h.REPO, "tests", "pg", "cluster.sh"), "stop",
                        self.envfile], capture_output=True, timeout=120)
        return False

    def pg_ctl(self, *args):
        cmd = [h.find_tool("pg_ctl"), "-D", self.datadir] + list(args)
        if os.geteuid() == 0:
            owner = _owner(self.datadir)
            cmd = ["runuser", "-u", owner, "--"] + cmd
        p = subprocess.run(cmd, cwd="/", capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        check(p.returncode == 0, "pg_ctl %s failed: %s" % (" ".join(args),
                                                          p.stderr.decode()[-1000:]))

    def stop(self):
        self.pg_ctl("stop", "-w", "-m", "fast")
        h.log("private cluster stopped")

    def start(self):
        self.pg_ctl("start", "-w", "-l", self.logfile)
        h.log("private cluster started")

    def restart(self):
        self.pg_ctl("restart", "-w", "-m", "fast", "-l", self.logfile)
        h.log("private cluster restarted")

    @contextlib.contextmanager
    def case(self, *args, **kw):
        """A harness Case whose database lives on this cluster."""
        old = os.environ.get("VOZAGENT_TEST_PGENV")
        os.environ["VOZAGENT_TEST_PGENV"] = self.envfile
        try:
            with h.Case(*args, **kw) as c:
                yield c
        finally:
            if old is None:
                os.environ.pop("VOZAGENT_TEST_PGENV", None)
            else:
                os.environ["VOZAGENT_TEST_PGENV"] = old


def _owner(path):
    return pwd.getpwuid(os.stat(path).st_uid).pw_name


def closed_port():
    """A TCP port on 127.0.0.1 that nothing listens on (just released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
