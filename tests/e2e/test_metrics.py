#!/usr/bin/env python3
"""metrics: `run` with metrics_listen serves /metrics (Prometheus text whose counters equal
the sums of this process's sync_runs rows, during a pass and after) and /healthz (200 after
a good pass; 503 with the reason once the API has failed for more than 3 poll intervals;
200 again when it recovers); 404, 405, an oversized request and an idle connection are
dealt with and the daemon keeps serving; a bad metrics_listen and a port in use fail
with 78 and a message naming the key and the address. promtool checks the output when it
is installed."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import harness as h
from harness import check

# sync_runs column -> counter
COUNTERS = {
    "requests": "requests_total", "pages": "pages_total",
    "records_seen": "records_seen_total", "inserted": "records_inserted_total",
    "updated": "records_updated_total", "rejected": "records_rejected_total",
    "warnings": "warnings_total", "marked_deleted": "records_marked_deleted_total",
}
FAMILIES = {
    "passes_total": "counter", "pass_in_progress": "gauge", "http_responses_total": "counter",
    "http_failures_total": "counter", "http_throttled_total": "counter",
    "retries_total": "counter", "concurrency": "gauge", "open_connections": "gauge",
    "last_success_timestamp_seconds": "gauge", "newest_call_timestamp_seconds": "gauge",
    "mirror_lag_seconds": "gauge", "pass_duration_seconds": "histogram",
    "resident_memory_bytes": "gauge",
}
FAMILIES.update({v: "counter" for v in COUNTERS.values()})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=h.scaled(10))
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8")
    finally:
        conn.close()


def scrape(port):
    """(text, {(name, labels-without-source): value}); checks every sample's source label."""
    st, hdrs, text = get(port, "/metrics")
    check(st == 200, "/metrics answered %s" % st)
    check(hdrs.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8",
          "/metrics Content-Type %r" % hdrs.get("Content-Type"))
    vals = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r'^vozagent_sync_([a-z_]+)\{source="e2e"((?:,[a-z]+="[^"]*")*)\} (\S+)$',
                     line)
        check(m, "a sample line without the vozagent_sync_ prefix or source label: %r" % line)
        vals[(m.group(1), m.group(2).lstrip(","))] = float(m.group(3))
    return text, vals


def db_sums(c):
    cols = ", ".join("coalesce(sum(%s), 0)::bigint" % k for k in COUNTERS)
    row = c.scalar("select %s from vozagent.sync_runs where source = 'e2e'" % cols)
    sums = dict(zip(COUNTERS, (int(x) for x in row.split("|"))))
    for line in c.q("select mode, outcome, count(*) from vozagent.sync_runs "
                    "where source = 'e2e' and outcome <> 'running' group by 1, 2").split("\n"):
        if line:
            mode, outcome, n = line.split("|")
            sums[(mode, outcome)] = int(n)
    return sums


def compare(c, port, want_running=None):
    """A scrape between two equal readings of sync_runs must equal them; None until one is
    taken (a commit came in between), else (vals, sums)."""
    before = db_sums(c)
    text, vals = scrape(port)
    after = db_sums(c)
    if before != after:
        return None
    running = vals[("pass_in_progress", "")] == 1
    if want_running is not None and running != want_running:
        return None
    for col, name in COUNTERS.items():
        check(vals[(name, "")] == after[col], "%s = %s, sync_runs.%s sums to %s (%s)"
              % (name, vals[(name, "")], col, after[col], "mid-pass" if running else "idle"))
    for mode in ("backfill", "incremental"):
        for outcome in ("ok", "failed", "interrupted"):
            got = vals[("passes_total", 'mode="%s",outcome="%s"' % (mode, outcome))]
            check(got == after.get((mode, outcome), 0), "passes_total{%s,%s} = %s, sync_runs "
                  "has %s" % (mode, outcome, got, after.get((mode, outcome), 0)))
    return text, vals, after


def compare_until(c, port):
    r = None
    while r is None:
        r = compare(c, port)
    return r


def promtool_check(text):
    tool = shutil.which("promtool")
    if tool is None:
        h.log("promtool not found: output not checked by it")
        return
    p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True)
    check(p.returncode == 0, "promtool check metrics refused the output:\n%s%s"
          % (p.stdout.decode(), p.stderr.decode()))
    h.log("promtool check metrics: ok")


def counters(order):
    """The counters equal sync_runs mid-pass and between passes; HELP/TYPE for every family."""
    port = free_port()
    with h.Case("metrics", order=order, seed=61, calls=400, page_size=10,
                env={"VOZAGENT_POLL_INTERVAL": "2s",
                     "VOZAGENT_METRICS_LISTEN": str(port)}) as c:
        # in the file, not the environment: a reload below changes it
        c.write_config("concurrency = 2\n")
        c.sim.config(delay_ms=100)
        p = c.spawn("run")
        c.wait_for("the listener", lambda: p.poll() is not None or _answers(port), timeout=30)
        if p.poll() is not None:
            check(False, "run exited: %s" % c.wait(p, 1))
        # before any pass ended, /healthz says so
        st, _, body = get(port, "/healthz")
        _, vals = scrape(port)
        if sum(v for (n, _l), v in vals.items() if n == "passes_total") == 0:
            check(st == 503 and body.startswith("no successful pass yet"),
                  "/healthz before the first pass ended: %s %r" % (st, body))
        mid = []
        c.wait_for("a stable reading mid-pass with pages committed", lambda: p.poll() is not None
                   or (lambda r: r is not None and r[1][("pages_total", "")] > 0
                       and mid.append(r) is None)(compare(c, port, want_running=True)),
                   timeout=60, interval=0.05)
        check(mid, "the first pass ended before a reading mid-pass")
        h.log("mid-pass: %d pages, %d requests as in sync_runs"
              % (mid[0][2]["pages"], mid[0][2]["requests"]))
        c.sim.config(delay_ms=0)
        c.wait_for("two ok passes", lambda: p.poll() is not None or (lambda r: r is not None and
                   r[2].get(("incremental", "ok"), 0) >= 1)(compare(c, port, want_running=False)),
                   timeout=60, interval=0.1)
        c.assert_exact("after the passes")
        # a reload rebuilds the HTTP client and the pass machinery: counters carry on
        incremental_ok = compare_until(c, port)[2].get(("incremental", "ok"), 0)
        c.write_config("concurrency = 3\n")
        os.kill(p.pid, signal.SIGHUP)
        c.wait_for("an ok pass with the reloaded configuration", lambda: p.poll() is not None or
                   (lambda r: r is not None and r[2].get(("incremental", "ok"), 0) >=
                    incremental_ok + 2)(compare(c, port, want_running=False)),
                   timeout=60, interval=0.1)
        check("reloaded configuration in effect" in c._read("bin%d.err" % p.e2e_n),
              "the reload was not applied")
        text, vals, sums = compare_until(c, port)
        check(sums["pages"] > 0 and sums["inserted"] == 400, "sync_runs sums: %s" % sums)
        for name, typ in FAMILIES.items():
            check("# HELP vozagent_sync_%s " % name in text, "no HELP for %s" % name)
            check("# TYPE vozagent_sync_%s %s\n" % (name, typ) in text, "no TYPE %s for %s"
                  % (typ, name))
        check(vals[("http_responses_total", 'class="2xx"')] >= sums["requests"],
              "2xx responses %s < requests %s" % (vals[("http_responses_total", 'class="2xx"')],
                                                  sums["requests"]))
        check(vals[("last_success_timestamp_seconds", "")] > 0, "no last success time")
        newest = max(h.started_us(x) for x in c.sim.calls()) / 1e6
        check(abs(vals[("newest_call_timestamp_seconds", "")] - newest) < 0.001,
              "newest call %s, the API's newest starts at %s"
              % (vals[("newest_call_timestamp_seconds", "")], newest))
        check(vals[("resident_memory_bytes", "")] > 1e6, "RSS %s" % vals)
        check(vals[("pass_duration_seconds_count", "")] == sum(
            v for k, v in sums.items() if isinstance(k, tuple)), "histogram count")
        check(vals[("pass_duration_seconds_bucket", 'le="+Inf"')] ==
              vals[("pass_duration_seconds_count", "")], "+Inf bucket != count")
        promtool_check(text)
        st, _, body = get(port, "/healthz")
        check(st == 200 and body == "ok\n", "/healthz after good passes: %s %r" % (st, body))
        h.terminate(p)
        r = c.wait(p, 10)
        check(r.rc == 0, "run did not exit 0 on SIGTERM")
        # at info, an incremental pass that went well is one line, its summary
        for run in c.sync_runs():
            if run["mode"] != "incremental" or run["outcome"] != "ok":
                continue
            lines = [x for x in r.err.splitlines() if "run %s:" % run["id"] in x]
            check(len(lines) == 1 and re.search(r"info: run \d+: incremental pass done in "
                                                r"[0-9.]+s: \d+ requests", lines[0]),
                  "run %s logged at info: %s" % (run["id"], lines))


def _answers(port):
    try:
        get(port, "/healthz")
        return True
    except OSError:
        return False


def raw(port, data, timeout=10):
    """Send data, read until the server closes: the bytes read (or what a reset left)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(timeout))
    got = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
    finally:
        s.close()
    return got


def health_and_http():
    """503 with the reason while the API fails, 200 after; 404/405/431; idle connections;
    bad metrics_listen and a port in use."""
    port = free_port()
    with h.Case("metrics_health", calls=60, page_size=20,
                env={"VOZAGENT_METRICS_LISTEN": str(port)}) as c:
        c.write_config("poll_interval = 1s\n")    # a reload at the end lengthens it
        # a bad value: 78 at once, naming the key and where it was set
        r = c.run("run", env={"VOZAGENT_METRICS_LISTEN": "localhost:9464"})
        c.expect_rc(r, 78, "metrics_listen = localhost:9464")
        check("VOZAGENT_METRICS_LISTEN: metrics_listen = 'localhost:9464': 'localhost' is not a "
              "numeric IPv4 address" in r.err, "message: %s" % r.err)
        r = c.run("run", env={"VOZAGENT_METRICS_LISTEN": "[::1]:99999"})
        c.expect_rc(r, 78, "metrics_listen port 99999")
        check("the port '99999' is not a number from 1 to 65535" in r.err, "message: %s" % r.err)
        # a port in use: 78 before any pass, naming the key and the address
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        bport = busy.getsockname()[1]
        r = c.run("run", env={"VOZAGENT_METRICS_LISTEN": "127.0.0.1:%d" % bport})
        busy.close()
        c.expect_rc(r, 78, "metrics_listen on a port in use")
        check("metrics_listen = 127.0.0.1:%d: cannot listen on 127.0.0.1:%d: address already in "
              "use" % (bport, bport) in r.err, "message: %s" % r.err)
        check(not c.has_table("sync_runs") or
              c.scalar("select count(*) from vozagent.sync_runs") == "0",
              "a pass ran although the listener could not start")

        p = c.spawn("run")
        c.wait_for("/healthz 200", lambda: p.poll() is not None or
                   (_answers(port) and get(port, "/healthz")[0] == 200), timeout=30)
        check(p.poll() is None, "run exited")
        st, _, body = get(port, "/nope")
        check(st == 404, "/nope: %s" % st)
        st, hdrs, _ = get(port, "/metrics", method="POST")
        check(st == 405 and "GET" in hdrs.get("Allow", ""), "POST /metrics: %s %s" % (st, hdrs))
        st, _, body = get(port, "/metrics", method="HEAD")
        check(st == 200 and body == "", "HEAD /metrics: %s %r" % (st, body))
        got = raw(port, b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n")
        check(got.startswith(b"HTTP/1.1 431 "),
              "an oversized request was answered %r" % got[:80])
        check(get(port, "/metrics")[0] == 200, "/metrics after an oversized request")
        got = raw(port, b"BREW /pot HTCPCP/1.0\r\n\r\n")
        check(got.startswith(b"HTTP/1.1 400 "), "a bad request line: %r" % got[:80])
        # an idle client: closed by the daemon, which serves others meanwhile
        idle = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(30))
        check(get(port, "/metrics")[0] == 200, "/metrics with an idle connection open")
        # more idle clients than the listener holds: the oldest waiting make room for a scrape
        crowd = [socket.create_connection(("127.0.0.1", port), timeout=h.scaled(30))
                 for _ in range(20)]
        try:
            check(get(port, "/metrics")[0] == 200, "/metrics with 20 idle connections open")
        finally:
            for x in crowd:
                x.close()

        # the API fails for good: 503 with the reason, once no pass succeeded for 3 s
        c.sim.faults(rate=1.0, seed=1, kinds=["503"])
        c.wait_for("/healthz 503", lambda: get(port, "/healthz")[0] == 503, timeout=60,
                   interval=0.2)
        c.wait_for("/healthz naming the failure",
                   lambda: get(port, "/healthz")[2].startswith("last pass failed: "), timeout=60,
                   interval=0.2)
        st, _, body = get(port, "/healthz")
        check(st == 503 and "HTTP 503" in body, "/healthz while the API fails: %s %r"
              % (st, body))
        h.log("/healthz: %s %s" % (st, body.strip()))
        r = None
        while r is None:
            r = compare(c, port)
        _, vals, sums = r
        check(sums.get(("incremental", "failed"), 0) >= 1, "no failed pass in sync_runs")
        check(vals[("http_responses_total", 'class="5xx"')] > 0, "no 5xx counted")
        check(vals[("retries_total", "")] > 0, "no retry counted")
        check(idle.recv(1) == b"", "the idle connection got data")
        idle.close()

        c.sim.faults(clear=True)
        c.wait_for("/healthz 200 again", lambda: get(port, "/healthz")[0] == 200, timeout=60,
                   interval=0.2)
        c.assert_exact("after the API recovered")

        # a reload to a longer interval: /healthz judges by it at once, not after the pass
        # that applies it (which is now a minute away)
        c.write_config("poll_interval = 60s\n")
        os.kill(p.pid, signal.SIGHUP)
        c.wait_for("the reload", lambda: "poll_interval changed" in c._read("bin%d.err" % p.e2e_n),
                   timeout=30)
        time.sleep(h.scaled(4.5))    # past 3 of the old intervals since the last pass
        st, _, body = get(port, "/healthz")
        check(st == 200, "/healthz after a reload to a longer poll_interval: %s %r" % (st, body))
        h.terminate(p, signal.SIGTERM)
        check(c.wait(p, 10).rc == 0, "run did not exit 0 on SIGTERM")


if __name__ == "__main__":
    orders = [os.environ["E2E_ORDER"]] if os.environ.get("E2E_ORDER") else [
        "oldest_first", "newest_first"]
    h.main([("metrics counters = sync_runs [%s]" % o, (lambda o=o: counters(o)))
            for o in orders] + [("healthz and the HTTP edges", health_and_http)])
