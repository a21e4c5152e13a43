#!/usr/bin/env python3
"""service: what `run` tells systemd, through a NOTIFY_SOCKET the test binds and reads.

watchdog: READY=1 and STATUS= come; with WATCHDOG_USEC=1s, WATCHDOG=1 comes at about
  half of it; while a synchronous statement of the loop waits for a table lock the test
  holds (the pass's first read of vozagent.sync_state), no ping comes at all; once the
  lock is released they come again. SIGTERM: STOPPING=1 and exit 0. (SIGTERM in the
  middle of a pass, and the mirror after it: test_run.py's stop_mid_pass.)
reload: SIGHUP is RELOADING=1 (with MONOTONIC_USEC=) then READY=1, every time. A good
  configuration (poll_interval 1h -> 1s, concurrency changed) takes effect: passes come
  every second. A bad one (two errors) is refused with each error logged on its own
  line, and the daemon goes on with the old one (still syncing every second, not every
  hour as the bad file also says). A changed `source` is refused, the key named, and
  the daemon goes on mirroring the old source. The API key came in VOZAGENT_API_TOKEN
  (wiped once read) and stays in use across reloads. In both orders.
key rotation: a new key in api_token_file, the API accepting only it: after SIGHUP the
  passes use it."""

import os
import re
import signal
import socket
import subprocess
import time

import harness as h
from harness import check
from notifysock import NotifySocket, check_alive

WATCHDOG_USEC = 1000000


def read_err(c, p):
    with open(os.path.join(c.tmp, "bin%d.err" % p.e2e_n), encoding="utf-8",
              errors="replace") as f:
        return f.read()


def ok_runs(c):
    return sum(1 for r in c.sync_runs() if r["outcome"] == "ok")


def lock_waiter(c):
    """(pid, query) of the daemon's session when it waits for a lock, else None."""
    out = c.pg.psql("select pid || '|' || query from pg_stat_activity where datname = '%s' "
                    "and application_name = 'vozagent-sync' and wait_event_type = 'Lock'"
                    % c.db).strip()
    return out.split("|", 1) if out else None


def hold_table_lock(c, table):
    """A psql session holding an ACCESS EXCLUSIVE lock on table until release()."""
    p = subprocess.Popen([c.pg.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                         env=c.pg.env(c.db), stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p.stdin.write(b"BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; "
                  b"SELECT 'locked';\n" % table.encode())
    p.stdin.flush()
    c.wait_for("the test's lock on %s" % table, lambda: c.scalar(
        "select count(*) from pg_locks l join pg_class r on r.oid = l.relation "
        "where r.relname = '%s' and l.mode = 'AccessExclusiveLock' and l.granted"
        % table.split(".")[-1]) == "1", timeout=10)
    return p


def release(p):
    p.stdin.write(b"COMMIT;\n")
    p.stdin.close()
    p.wait(10)


def watchdog():
    with h.Case("service_wd", calls=100, page_size=50) as c:
        ns = NotifySocket(c.tmp)
        try:
            p = c.spawn("run", env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": WATCHDOG_USEC,
                                    "VOZAGENT_POLL_INTERVAL": "1s"})
            ns.wait_key("READY", proc=p)
            ns.wait_key("STATUS", proc=p)
            c.wait_exact("after the first pass", proc=p)

            # about one ping per half period; a ping per full period would give ~4
            m = ns.mark()
            time.sleep(4)
            n = ns.count("WATCHDOG", m)
            h.log("%d WATCHDOG=1 in 4s (WATCHDOG_USEC=1s)" % n)
            check(6 <= n <= 24, "%d WATCHDOG=1 pings in 4s with WATCHDOG_USEC=%d: expected "
                  "about 8 (one every half period)" % (n, WATCHDOG_USEC))

            # block the loop for real: the next pass's first read of the cursor (on the
            # loop) waits for the test's lock. Lock between passes, so that no commit
            # of the writer's thread is the one that waits.
            for attempt in range(5):
                c.wait_for("no pass running", lambda: all(
                    r["outcome"] != "running" for r in c.sync_runs()), timeout=30)
                locker = hold_table_lock(c, "vozagent.sync_state")
                try:
                    c.wait_for("the daemon to wait for the lock",
                               lambda: lock_waiter(c) is not None, timeout=10)
                except h.TestFailure:
                    release(locker)
                    continue
                waiter = lock_waiter(c)
                if "api_order" in waiter[1]:
                    break
                h.log("attempt %d: the lock caught %s; again" % (attempt, waiter[1][:60]))
                release(locker)
            else:
                raise h.TestFailure("never caught the loop's read of sync_state waiting")
            h.log("the loop waits in: %s" % h.short(waiter[1], 70))
            time.sleep(0.6)          # a ping already sent when the loop blocked
            m = ns.mark()
            time.sleep(2.5)          # five half periods
            blocked = ns.count("WATCHDOG", m)
            still = lock_waiter(c)
            check(still is not None and still[0] == waiter[0],
                  "test: the daemon stopped waiting for the lock on its own")
            check(blocked == 0, "%d WATCHDOG=1 pings while the loop was blocked in a "
                  "statement" % blocked)
            m = ns.mark()
            release(locker)
            ns.wait("pings to resume", lambda: ns.count("WATCHDOG", m) >= 2, timeout=20)
            check_alive(p)
            h.log("no ping for 2.5s while blocked; pings resumed after the lock went")

            m = ns.mark()
            h.terminate(p)
            r = c.wait(p, 15)
            c.expect_rc(r, 0, "run stopped by SIGTERM")
            check(ns.count("STOPPING", m) == 1, "no STOPPING=1 on SIGTERM")
            c.assert_exact("after SIGTERM")
        finally:
            ns.close()


def write_conf(c, **keys):
    base = {"source": c.source, "api_url": c.sim.api_url,
            "database_url": c.pg.conninfo(c.db), "page_size": 40}
    base.update(keys)
    text = "".join("%s = \"%s\"\n" % (k, str(v).replace("\\", "\\\\").replace('"', '\\"'))
                   if k != "raw" else v for k, v in base.items())
    return c.write_config(text)


def sighup(c, p, ns):
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1; returns the READY message."""
    m = ns.mark()
    os.kill(p.pid, signal.SIGHUP)
    ns.wait("READY=1 after the reload", lambda: ns.count("READY", m) > 0, timeout=20)
    msgs = ns.since(m)
    keys = [k for _, f in msgs for k in f if k in ("RELOADING", "READY")]
    check(keys[:2] == ["RELOADING", "READY"],
          "after SIGHUP: %s, expected RELOADING then READY" % keys)
    rel = ns.since(m, "RELOADING")[0][1]
    check(re.fullmatch(r"\d+", rel.get("MONOTONIC_USEC", "")),
          "RELOADING=1 without MONOTONIC_USEC: %s" % rel)
    return ns.since(m, "READY")[0][1]


def reload(order):
    with h.Case("service_reload", order=order, calls=120) as c:
        ns = NotifySocket(c.tmp)
        try:
            conf = write_conf(c, poll_interval="1h")
            # settings from the file only; the key alone from the environment
            env = {"NOTIFY_SOCKET": ns.path, "VOZAGENT_SOURCE": None, "VOZAGENT_API_URL": None,
                   "VOZAGENT_DATABASE_URL": None, "VOZAGENT_PAGE_SIZE": None}
            p = c.spawn("run", env=env, config=conf)
            ns.wait_key("READY", proc=p)
            c.wait_exact("after the first pass", proc=p)
            c.wait_for("the first pass to end", lambda: ok_runs(c) == 1)

            # good: one pass an hour -> one a second; concurrency and page size too
            write_conf(c, poll_interval="1s", concurrency=2, page_size=30)
            ready = sighup(c, p, ns)
            h.log("good reload: STATUS=%s" % ready.get("STATUS"))
            c.wait_for("passes every second after the reload", lambda: ok_runs(c) >= 4,
                       timeout=30)
            c.sim.add(count=5)
            c.wait_exact("with the reloaded configuration", proc=p)
            err = read_err(c, p)
            check("poll_interval" in err and "in effect from the next pass" in err,
                  "the reload does not say what changed:\n%s" % h.tail(err, 10))

            # bad: two errors, each on its line; the old configuration stays in use
            write_conf(c, poll_interval="banana", page_size="0")
            before = len(read_err(c, p))
            ready = sighup(c, p, ns)
            err = read_err(c, p)[before:]
            lines = err.splitlines()
            check(any("poll_interval" in l and "banana" in l for l in lines) and
                  any("page_size" in l for l in lines) and
                  not any("poll_interval" in l and "page_size" in l for l in lines),
                  "the bad reload does not log each error on its own line:\n%s" % err)
            check("previous" in err, "the bad reload does not say the old configuration "
                  "stays:\n%s" % err)
            check("fail" in ready.get("STATUS", "").lower(),
                  "STATUS after a bad reload: %s" % ready.get("STATUS"))
            c.sim.add(count=4)
            c.sim.finish(count=2)
            c.wait_exact("after the bad reload (old configuration kept)", timeout=20, proc=p)

            # another source is another mirror: refused, the key named
            write_conf(c, source="elsewhere", poll_interval="1h")
            before = len(read_err(c, p))
            sighup(c, p, ns)
            err = read_err(c, p)[before:]
            check(re.search(r"\bsource\b.*restart", err) and "refused" in err,
                  "the refused reload does not name source:\n%s" % err)
            check(not re.search(r"\bpoll_interval\b.*restart", err),
                  "poll_interval named as needing a restart:\n%s" % err)
            c.sim.add(count=3)
            c.wait_exact("after the refused reload (same source, every second)", timeout=20,
                         proc=p)
            check(c.scalar("select count(*) from vozagent.sync_runs where source <> '%s'"
                           % c.source) == "0", "a pass ran for another source")

            h.terminate(p)
            c.expect_rc(c.wait(p, 15), 0, "run stopped by SIGTERM")
            c.assert_exact("at the end")
        finally:
            ns.close()


def key_rotation():
    """The key in api_token_file is replaced and the API accepts only the new one: after
    SIGHUP the daemon's passes use the new key (without it, the next pass gets a 401 and
    the daemon stops)."""
    with h.Case("service_key", calls=60) as c:
        ns = NotifySocket(c.tmp)
        try:
            keyfile = os.path.join(c.tmp, "api_token")

            def put_key(k):
                with open(keyfile, "w") as f:
                    f.write(k + "\n")
                os.chmod(keyfile, 0o600)
            put_key(c.token)
            conf = write_conf(c, api_token_file=keyfile, poll_interval="1h")
            env = {"NOTIFY_SOCKET": ns.path, "VOZAGENT_SOURCE": None, "VOZAGENT_API_URL": None,
                   "VOZAGENT_DATABASE_URL": None, "VOZAGENT_PAGE_SIZE": None,
                   "VOZAGENT_API_TOKEN": None}
            p = c.spawn("run", env=env, config=conf)
            ns.wait_key("READY", proc=p)
            c.wait_exact("with the first key", proc=p)
            c.wait_for("the first pass to end", lambda: ok_runs(c) == 1)

            new = "e2e-key-" + os.urandom(9).hex()
            c.secrets.append(new)
            put_key(new)
            c.sim.config(token=new)
            c.sim.add(count=5)
            # the next pass comes at once, with the new key
            write_conf(c, api_token_file=keyfile, poll_interval="1s")
            sighup(c, p, ns)
            c.wait_exact("with the new key", proc=p)
            err = read_err(c, p)
            check(re.search(r"api_token.*in effect from the next pass", err),
                  "the reload does not say the key changed:\n%s" % h.tail(err, 5))
            h.terminate(p)
            c.expect_rc(c.wait(p, 15), 0, "run stopped by SIGTERM")
        finally:
            ns.close()


def sighup_elsewhere():
    """Only run reloads; every other command, and run before its loop, ignores SIGHUP
    rather than dying of it: `status` stuck connecting to a server that never answers
    gets one, then exits as it would have (69) once the server goes away."""
    with h.Case("service_hup", calls=5) as c:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        port = lsock.getsockname()[1]
        p = c.spawn("status", env={"VOZAGENT_DATABASE_URL":
                                   "host=127.0.0.1 port=%d dbname=x connect_timeout=30" % port})
        conn = None
        try:
            lsock.settimeout(h.scaled(10))
            conn, _ = lsock.accept()           # status is connecting now
            os.kill(p.pid, signal.SIGHUP)
            time.sleep(0.3)
            check(p.poll() is None, "status died of SIGHUP (%s)" % p.returncode)
        finally:
            if conn is not None:
                conn.close()
            lsock.close()
        r = c.wait(p, 30)
        c.expect_rc(r, 69, "status after the server went away")


if __name__ == "__main__":
    h.main([("watchdog", watchdog)] + h.both_orders(reload, "reload") +
           [("key rotation through api_token_file", key_rotation),
            ("SIGHUP outside run's loop", sighup_elsewhere)])
