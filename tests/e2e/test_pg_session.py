#!/usr/bin/env python3
"""The PostgreSQL session as a user's server gives it:

- client_encoding: the daemon run with PGCLIENTENCODING=LATIN1 in its environment
  stores 'café 日本' exactly; a database encoded LATIN1 or SQL_ASCII is refused at
  start by every command (exit 69, a message naming the encoding), nothing written;
- least privilege: the schema migrated by its owner, the daemon run as a role with
  only the grants of docs/writer-role.sql (no CREATE anywhere): once, backfill,
  run and status all work, and backfill's ANALYZE of its seen set is not skipped;
- a reconnect whose preparation fails (TEMPORARY revoked, then the backend
  terminated mid-backfill): the run is still closed, 'failed' with the error;
- a read-only server (default_transaction_read_only, with and without
  target_session_attrs=any): once exits 69 saying so; run keeps retrying, logging
  it, and resumes mirroring once the server is writable again; a server made
  read-only under a pass (ALTER SYSTEM, private cluster): the refused page is
  redone after reconnecting, the pass ends 'ok';
- SIGTERM while a statement waits for a lock: the statement is cancelled, the
  daemon exits 0 well before lock_timeout (1 min), the run is 'interrupted' and
  nothing of the page is written;
- SIGTERM during an API request (no statement running): no cancel request is
  sent, so none can land on the statement that records the run's end, which is
  'interrupted' (a proxy holds any cancel request until that statement waits);
- SIGTERM just after the connection was lost, its server now a black hole: the
  daemon exits instead of blocking in a cancel request to that server;
- connection defaults (tcp_user_timeout, target_session_attrs, client_encoding)
  are in effect, and database_url overrides the first two (debug log)."""

import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

TEXT = "café 日本"
WRITER_SQL = os.path.join(h.REPO, "docs", "writer-role.sql")


def conninfo_as(c, role, extra=""):
    v = c.pg.vars
    return "host=%s port=%s user=%s dbname=%s %s" % (v["PGHOST"], v["PGPORT"], role, c.db,
                                                     extra)


def grant_writer(c, role):
    """docs/writer-role.sql as the owner, as the README tells the operator to."""
    p = subprocess.run([c.pg.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v",
                        "writer=" + role, "-f", WRITER_SQL], env=c.pg.env(c.db),
                       capture_output=True, timeout=60)
    check(p.returncode == 0, "docs/writer-role.sql failed:\n%s"
          % p.stderr.decode("utf-8", "replace"))


def client_encoding_latin1():
    with h.Case("pgs_latin1_client", seed=471, calls=30,
                env={"PGCLIENTENCODING": "LATIN1"}) as c:
        ids = [x["id"] for x in c.sim.calls()[:3]]
        c.sim.update(ids=ids, set={"call_intent": TEXT, "note": {"t": TEXT}})
        c.expect_rc(c.run("backfill"), 0, "backfill with PGCLIENTENCODING=LATIN1")
        got = c.qjson("select json_agg(json_build_array(call_intent, raw->'note'->>'t', "
                      "raw::text like '%%' || '%s' || '%%') order by id) from vozagent.calls "
                      "where id in (%s)" % (TEXT, ",".join("'%s'" % i for i in ids)))
        check(got == [[TEXT, TEXT, True]] * 3, "'%s' did not round-trip: %s" % (TEXT, got))
        c.assert_exact("after a backfill with PGCLIENTENCODING=LATIN1")
        # and on the incremental path
        c.sim.update(ids=ids[:1], set={"lead_qualification": TEXT + " ü"})
        c.expect_rc(c.run("once"), 0)
        c.assert_exact("after once with PGCLIENTENCODING=LATIN1")


def database_not_utf8():
    for enc in ("LATIN1", "SQL_ASCII"):
        with h.Case("pgs_enc_%s" % enc.lower(), seed=472, calls=10) as c:
            c.pg.drop_db(c.db)
            c.pg.psql("CREATE DATABASE \"%s\" ENCODING '%s' LC_COLLATE 'C' LC_CTYPE 'C' "
                      "TEMPLATE template0" % (c.db, enc))
            soft = fl.Soft()
            for cmd in ("migrate", "once", "backfill", "status", "run"):
                if cmd == "run":
                    r = c.wait(c.spawn("run"), 30)
                else:
                    r = c.run(cmd, timeout=30)
                soft.check(r.rc == 69, "%s on a %s database: exit %s, expected 69"
                           % (cmd, enc, r.rc))
                soft.check(re.search(r"uses encoding %s: vozagent-sync needs a UTF8 database"
                                     % enc, r.err), "%s on a %s database: the message does "
                           "not name the encoding:\n%s" % (cmd, enc, h.tail(r.err, 3)))
                h.log("%s on %s: exit %s: %s" % (cmd, enc, r.rc, h.tail(r.err, 1)))
            soft.check(not c.has_table("vozagent.schema_migrations"),
                       "the schema was created in a %s database" % enc)
            soft.check(not fl.api_reqs(c.sim), "the API was called")
            soft.done()


def least_privilege():
    with h.Case("pgs_writer", seed=473, calls=120, page_size=25,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c, h.Role(c.pg, "e2e_writer") as w:
        c.expect_rc(c.run("migrate"), 0, "migrate as the owner")
        grant_writer(c, w.name)
        check(c.scalar("select has_database_privilege('%s', current_database(), 'CREATE') "
                       "or has_schema_privilege('%s', 'vozagent', 'CREATE')"
                       % (w.name, w.name)) == "f", "the writer role can CREATE")
        env = {"VOZAGENT_DATABASE_URL": conninfo_as(c, w.name)}
        r = c.run("once", env=env)
        c.expect_rc(r, 0, "once as the writer role: %s" % h.tail(r.err, 2))
        c.assert_exact("after once as the writer")
        c.sim.add(count=10)
        c.sim.delete(count=5)
        r = c.run("backfill", env=env)
        c.expect_rc(r, 0, "backfill as the writer role: %s" % h.tail(r.err, 2))
        # the planner needs the seen set's statistics: ANALYZE must not be skipped
        check(not re.search(r"skipping|only table or database owner", r.err),
              "backfill as the writer logged a skipped step:\n%s" % h.tail(r.err, 5))
        c.assert_exact("after backfill as the writer")
        p = c.spawn("run", env=env)
        c.sim.add(count=7)
        c.wait_exact("under run as the writer", proc=p)
        h.terminate(p)
        c.expect_rc(c.wait(p, 20), 0, "run as the writer, then SIGTERM")
        r = c.run("status", env=env)
        c.expect_rc(r, 0, "status as the writer role: %s" % h.tail(r.err, 2))
        check("last passes" in r.out, "status printed no passes:\n%s" % r.out)
        owners = c.scalar("select count(*) from pg_class where relowner = "
                          "(select oid from pg_roles where rolname = '%s') and "
                          "relpersistence <> 't'" % w.name)
        check(owners == "0", "the writer owns %s relation(s)" % owners)


def prepare_fails_after_reconnect():
    with h.Case("pgs_prepfail", seed=474, calls=300, page_size=10) as c, \
            h.Role(c.pg, "e2e_prep") as w:
        c.expect_rc(c.run("migrate"), 0)
        grant_writer(c, w.name)
        c.sim.config(delay_ms=40)
        p = c.spawn("backfill", env={"VOZAGENT_DATABASE_URL": conninfo_as(c, w.name)})
        c.wait_for("60 calls committed", lambda: p.poll() is not None or c.count_calls() >= 60,
                   timeout=60)
        check(p.poll() is None, "backfill ended (%s) too early" % p.returncode)
        # the live session keeps its staging table; a new one cannot create it
        c.q('REVOKE TEMPORARY ON DATABASE "%s" FROM PUBLIC, "%s"' % (c.db, w.name))
        for pid in fl.daemon_backends(c):
            c.scalar("select pg_terminate_backend(%s)" % pid)
        r = c.wait(p, 60)
        c.expect_rc(r, 75, "backfill whose reconnect cannot prepare")
        runs = c.sync_runs()
        check(len(runs) == 1, "sync_runs: %s" % runs)
        run = runs[0]
        check(run["outcome"] == "failed" and run["finished_at"] is not None,
              "the run was not closed: outcome %r, finished_at %r; the log:\n%s"
              % (run["outcome"], run["finished_at"], h.tail(r.err, 5)))
        check(run["error"] and "temporary" in run["error"],
              "the run's error does not say why: %r" % run["error"])
        check("could not record the end of run" not in r.err, "the log says the end of the run "
              "was not recorded:\n%s" % h.tail(r.err, 5))
        h.log("run closed: %s" % run["error"])


def read_only():
    with h.Case("pgs_readonly", seed=475, calls=60,
                env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
        c.expect_rc(c.run("backfill"), 0)
        notify = fl.Notify(c.tmp)
        p = c.spawn("run", env={"NOTIFY_SOCKET": notify.path})
        notify.wait_for("READY=1", 20, p)
        c.pg.psql('ALTER DATABASE "%s" SET default_transaction_read_only = on' % c.db)
        for pid in fl.daemon_backends(c):
            c.scalar("select pg_terminate_backend(%s)" % pid)
        h.log("database read-only, the daemon's backend terminated")
        for extra in ("", " target_session_attrs=any"):
            r = c.run("once", env={"VOZAGENT_DATABASE_URL": c.pg.conninfo(c.db) + extra})
            c.expect_rc(r, 69, "once on a read-only server%s" % extra)
            check(re.search(r"read-only", r.err), "once%s: the message does not say the server "
                  "is read-only:\n%s" % (extra, h.tail(r.err, 3)))
            h.log("once%s: %s" % (extra, h.tail(r.err, 1)))
        # run retries: at least two attempts logged, and it is still there
        path = os.path.join(c.tmp, "bin%d.err" % p.e2e_n)
        c.wait_for("two read-only messages from run", lambda: p.poll() is not None or len(
            re.findall(r"read-only", open(path, encoding="utf-8").read())) >= 2, timeout=60)
        check(p.poll() is None, "run exited (%s) on a read-only server:\n%s"
              % (p.returncode, h.tail(open(path, encoding="utf-8").read(), 5)))
        check(any(m.startswith("STATUS=") and "Waiting" in m for m in notify.lines()),
              "no STATUS= while waiting for a writable server: %s" % notify.msgs)
        c.pg.psql('ALTER DATABASE "%s" RESET default_transaction_read_only' % c.db)
        c.sim.add(count=12)
        c.sim.finish(count=3)
        c.wait_exact("after the server is writable again", timeout=60, proc=p)
        h.terminate(p)
        r = c.wait(p, 20)
        c.expect_rc(r, 0, "run after SIGTERM")
        h.log("run kept going through %d read-only messages" % r.err.count("read-only"))
        notify.close()


def read_only_while_connected():
    # ALTER SYSTEM reaches every database: a private cluster, not the shared one
    with tempfile.TemporaryDirectory(prefix="vozagent-e2e-pgro-") as workdir:
        with fl.Cluster(workdir) as cl, \
                cl.case("pgs_ro_reload", seed=478, calls=200, page_size=10,
                        env={"VOZAGENT_POLL_INTERVAL": "1s"}) as c:
            c.sim.config(delay_ms=50)
            p = c.spawn("run")
            c.wait_for("50 calls committed", lambda: p.poll() is not None or
                       c.count_calls() >= 50, timeout=60)
            c.pg.psql("ALTER SYSTEM SET default_transaction_read_only = on")
            c.pg.psql("SELECT pg_reload_conf()")
            fl.wait_log(c, p, r"read-only.*\n(.|\n)*read-only", timeout=60)
            check(p.poll() is None, "run exited (%s)" % p.returncode)
            c.pg.psql("ALTER SYSTEM RESET default_transaction_read_only")
            c.pg.psql("SELECT pg_reload_conf()")
            c.wait_exact("after the server is writable again", timeout=90, proc=p)
            # the pass that met the read-only server ends after the mirror is exact
            c.wait_for("a pass ended ok", lambda: p.poll() is not None or any(
                x["outcome"] == "ok" for x in c.sync_runs()), timeout=60)
            h.terminate(p)
            r = c.wait(p, 20)
            c.expect_rc(r, 0, "run after SIGTERM")
            runs = c.sync_runs()
            check(runs and runs[0]["outcome"] == "ok" and
                  not [x for x in runs if x["outcome"] == "failed"],
                  "a write refused as read-only failed the pass instead of being redone "
                  "after reconnecting: %s" % [(x["outcome"], x["error"]) for x in runs])
            h.log("the page refused as read-only was redone: %s"
                  % [(x["mode"][0], x["outcome"]) for x in runs])


def sigterm_cancels_statement():
    with h.Case("pgs_sigterm", seed=476, calls=40) as c:
        c.expect_rc(c.run("migrate"), 0)
        locker = subprocess.Popen([c.pg.psql_bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                  env=c.pg.env(c.db), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            locker.stdin.write("BEGIN;\nLOCK TABLE vozagent.calls IN SHARE MODE;\n"
                               "SELECT 'locked';\n")
            locker.stdin.flush()
            check(locker.stdout.readline().strip() == "locked", "could not lock the table")
            p = c.spawn("run")
            c.wait_for("the daemon's statement waiting for the lock", lambda: p.poll() is not None
                       or c.scalar("select count(*) from pg_stat_activity where datname = '%s' "
                                   "and application_name = 'vozagent-sync' and "
                                   "wait_event_type = 'Lock'" % c.db) != "0", timeout=30)
            check(p.poll() is None, "run exited (%s) before blocking" % p.returncode)
            t = time.monotonic()
            h.terminate(p)
            # lock_timeout is 1 min: an uncancelled statement would hold the exit that long
            r = c.wait(p, 20)
            h.log("run exited %s, %.1fs after SIGTERM" % (r.rc, time.monotonic() - t))
            c.expect_rc(r, 0, "run stopped by SIGTERM during a blocked statement")
            run = c.last_run()
            check(run is not None and run["outcome"] == "interrupted",
                  "the run is not 'interrupted': %s" % run)
        finally:
            locker.stdin.close()
            locker.wait(30)
        check(c.count_calls() == 0, "part of the page was written")
        check(c.scalar("select count(*) from vozagent.sync_runs where outcome = 'running'") ==
              "0", "a run is left 'running'")


class CancelHoldingProxy:
    """TCP on 127.0.0.1 to the cluster's unix socket. A cancel request is answered
    (its connection closed, as the postmaster does) but held until release().
    blackhole() cuts the sessions; then connections are accepted, never answered."""

    CANCEL_CODE = 80877102

    def __init__(self, pg):
        self.target = os.path.join(pg.vars["PGHOST"], ".s.PGSQL.%s" % pg.vars["PGPORT"])
        self.held = []
        self.socks = []
        self.dark = False
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                cl, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(cl)
            if self.dark:
                continue
            threading.Thread(target=self._serve, args=(cl,), daemon=True).start()

    def _serve(self, cl):
        head = b""
        while len(head) < 8:
            b = cl.recv(8 - len(head))
            if not b:
                cl.close()
                return
            head += b
        length, code = struct.unpack("!II", head)
        if length == 16 and code == self.CANCEL_CODE:
            rest = b""
            while len(rest) < 8:
                b = cl.recv(8 - len(rest))
                if not b:
                    break
                rest += b
            self.held.append(head + rest)
            cl.close()
            return
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socks.append(up)
        up.connect(self.target)
        up.sendall(head)
        threading.Thread(target=self._pump, args=(cl, up), daemon=True).start()
        self._pump(up, cl)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                dst.sendall(b)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release(self):
        """Send the held cancel requests to the server; how many there were."""
        n = len(self.held)
        for packet in self.held:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
                up.connect(self.target)
                up.sendall(packet)
                while up.recv(64):
                    pass
        self.held = []
        return n

    def blackhole(self):
        self.dark = True
        for x in self.socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()
        for x in self.socks:
            x.close()


def sigterm_outside_statement():
    with h.Case("pgs_sigterm_idle", seed=479, calls=40) as c:
        c.expect_rc(c.run("migrate"), 0)
        proxy = CancelHoldingProxy(c.pg)
        locker = None
        try:
            url = "host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable" % (
                proxy.port, c.pg.vars["PGUSER"], c.db)
            fl.faults(c.sim, queue=[{"kind": "hang", "seconds": 120}])
            p = c.spawn("run", env={"VOZAGENT_DATABASE_URL": url,
                                    "VOZAGENT_HTTP_TIMEOUT": "100s"})
            c.wait_for("the API request hanging", lambda: p.poll() is not None or any(
                x["fault"] == "hang" for x in fl.api_reqs(c.sim)), timeout=30)
            check(p.poll() is None, "run exited (%s)" % p.returncode)
            run = c.last_run()
            check(run is not None and run["outcome"] == "running", "no running run: %s" % run)
            # the run's row locked: the statement recording its end waits, cancellable
            locker = subprocess.Popen([c.pg.psql_bin, "-X", "-q", "-At", "-v",
                                       "ON_ERROR_STOP=1"], env=c.pg.env(c.db),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            locker.stdin.write("BEGIN;\nSELECT 'locked' FROM vozagent.sync_runs WHERE id = %s "
                               "FOR UPDATE;\n" % run["id"])
            locker.stdin.flush()
            check(locker.stdout.readline().strip() == "locked", "could not lock the run")
            h.terminate(p)
            c.wait_for("the end of the run waiting for its row", lambda: p.poll() is not None
                       or c.scalar("select count(*) from pg_stat_activity where datname = "
                                   "'%s' and application_name = 'vozagent-sync' and "
                                   "wait_event_type = 'Lock'" % c.db) != "0", timeout=30)
            held = proxy.release()
            h.log("cancel requests sent by SIGTERM outside a statement: %d" % held)
            if held:
                # the released cancel reaches the waiting statement before the lock goes
                c.wait_for("the daemon's statement cancelled", lambda: p.poll() is not None
                           or c.scalar("select count(*) from pg_stat_activity where datname "
                                       "= '%s' and application_name = 'vozagent-sync' and "
                                       "wait_event_type = 'Lock'" % c.db) == "0", timeout=30)
            locker.stdin.write("COMMIT;\n")
            locker.stdin.close()
            locker.wait(30)
            r = c.wait(p, 30)
            c.expect_rc(r, 0, "run stopped by SIGTERM during an API request")
            run = c.last_run()
            check(run["outcome"] == "interrupted", "the run is %r, not 'interrupted' (%d cancel "
                  "request(s) sent with no statement running); the log:\n%s"
                  % (run["outcome"], held, h.tail(r.err, 5)))
            check(held == 0, "SIGTERM with no statement running sent %d cancel request(s)"
                  % held)
        finally:
            if locker is not None and locker.poll() is None:
                locker.kill()
                locker.wait(30)
            proxy.close()


def sigterm_after_connection_lost():
    with h.Case("pgs_sigterm_lost", seed=480, calls=300, page_size=10) as c:
        c.expect_rc(c.run("migrate"), 0)
        proxy = CancelHoldingProxy(c.pg)
        try:
            url = "host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable" % (
                proxy.port, c.pg.vars["PGUSER"], c.db)
            c.sim.config(delay_ms=40)
            p = c.spawn("run", env={"VOZAGENT_DATABASE_URL": url})
            c.wait_for("60 calls committed", lambda: p.poll() is not None or
                       c.count_calls() >= 60, timeout=60)
            check(p.poll() is None, "run exited (%s)" % p.returncode)
            proxy.blackhole()
            # the first reconnect comes a second later: SIGTERM before it
            fl.wait_log(c, p, r"lost PostgreSQL", timeout=30)
            h.terminate(p)
            r = c.wait(p, 30)
            c.expect_rc(r, 0, "run stopped by SIGTERM with its server a black hole")
        finally:
            proxy.close()


def connection_defaults():
    with h.Case("pgs_conn_opts", seed=477, calls=5, env={"VOZAGENT_LOG_LEVEL": "debug"}) as c:
        r = c.run("migrate")
        c.expect_rc(r, 0)
        m = re.search(r"PostgreSQL connection options:.*", r.err)
        check(m, "no connection options at debug level:\n%s" % h.tail(r.err, 5))
        for opt in ("tcp_user_timeout=30000", "target_session_attrs=read-write",
                    "client_encoding=UTF8", "keepalives=1"):
            check(re.search(r"\s%s(\s|$)" % opt, m.group(0)), "%s not in effect: %s"
                  % (opt, m.group(0)))
        r = c.run("migrate", env={"VOZAGENT_DATABASE_URL": c.pg.conninfo(c.db) +
                                  " tcp_user_timeout=5000 target_session_attrs=any"
                                  " client_encoding=LATIN1"})
        c.expect_rc(r, 0)
        m = re.search(r"PostgreSQL connection options:.*", r.err)
        check(m and " tcp_user_timeout=5000" in m.group(0) and
              " target_session_attrs=any" in m.group(0) and " client_encoding=UTF8" in m.group(0),
              "database_url does not override tcp_user_timeout/target_session_attrs, or "
              "overrides client_encoding: %s" % (m and m.group(0)))
        h.log(m.group(0))


if __name__ == "__main__":
    h.main([("PGCLIENTENCODING=LATIN1 in the daemon's environment", client_encoding_latin1),
            ("a database not encoded UTF8 is refused", database_not_utf8),
            ("a writer role without CREATE", least_privilege),
            ("preparation fails after a reconnect", prepare_fails_after_reconnect),
            ("a read-only server", read_only),
            ("a server that turns read-only under a pass", read_only_while_connected),
            ("SIGTERM during a blocked statement", sigterm_cancels_statement),
            ("SIGTERM during an API request", sigterm_outside_statement),
            ("SIGTERM after the connection was lost", sigterm_after_connection_lost),
            ("connection defaults", connection_defaults)])
