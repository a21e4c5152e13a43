#!/usr/bin/env python3
"""fastapi_check: the bench server answers as the API documents, with the simulator's data.

    fastapi_check.py PATH-TO-fastapi [--calls N]

A benchmark against a server that lists calls wrongly measures nothing, so
this checks, against a small data set, in both orders: every page parses,
ids are unique, the list is ordered by call_started_at (ties by id); each
documented filter gives exactly the calls of the whole list that match it,
at any offset; no call starts in the future, however long the history;
pipelined requests are all answered; errors (400, 401, 404, 405, 429 with
Retry-After) are
answered as calls.md expects; the records use the same fields with the same
JSON types as the simulator's generator; and --dump-copy holds exactly the
typed columns and the record of every listed call. Exit status 0 when all
hold; each failure is printed.
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
import vozagent_sim as sim  # noqa: E402

KEY = "check-key"
FAILS = []
ID_RE = re.compile(r"^call-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$")
TYPED = ("id", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
         "call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
         "call_intent")


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL: " + what)


class Server:
    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, "--port", "0", "--key", KEY] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def get(self, path, key=KEY):
        self.conn.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})
        r = self.conn.getresponse()
        body = r.read()
        return r.status, dict(r.getheaders()), body

    def page(self, query):
        status, _, body = self.get("/v1/calls?" + query)
        check(status == 200, "GET /v1/calls?%s answered %d" % (query, status))
        return json.loads(body, parse_float=Decimal)

    def all(self, query="", limit=100):
        out, offset = [], 0
        while True:
            p = self.page("limit=%d&offset=%d%s" % (limit, offset, query))
            out += p
            if len(p) < limit:
                return out
            offset += limit

    def stop(self):
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err


def type_name(v):
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(v), "number")


def shapes(records):
    """field -> set of JSON types it takes, over all records."""
    out = {}
    for r in records:
        for k, v in r.items():
            out.setdefault(k, set()).add(type_name(v))
    return out


def copy_unescape(field):
    if field == "\\N":
        return None
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1),
                                                                         m.group(1)), field)


def check_list(srv, order, n):
    calls = srv.all()
    check(len(calls) == n, "%s: %d calls listed, not %d" % (order, len(calls), n))
    ids = [c["id"] for c in calls]
    check(len(set(ids)) == len(ids), "%s: ids repeat" % order)
    check(all(ID_RE.match(i) for i in ids), "%s: an id is not shaped call-8-4-4-4" % order)
    keys = [(sim.parse_ts(c["call_started_at"]), c["id"]) for c in calls]
    want = sorted(keys, reverse=(order == "newest_first"))
    check(keys == want, "%s: not ordered by call_started_at, then id" % order)
    return calls


def check_filters(srv, calls):
    contact = calls[len(calls) // 2]["contact_id"]
    assistant = calls[0]["assistant_id"]
    cases = [("status", s) for s in sim.STATUSES] + [("call_type", t) for t in sim.CALL_TYPES]
    cases += [("contact_id", contact), ("assistant_id", assistant), ("contact_id", "nobody")]
    field = {"status": "call_status"}
    for k, v in cases:
        want = [c["id"] for c in calls if c.get(field.get(k, k)) == v]
        got = [c["id"] for c in srv.all("&%s=%s" % (k, v), limit=37)]
        check(got == want, "filter %s=%s: %d calls, expected %d" % (k, v, len(got), len(want)))
    want = [c["id"] for c in calls if c["call_status"] == "completed" and
            c["call_type"] == "inbound" and c["assistant_id"] == assistant]
    got = [c["id"] for c in srv.all("&status=completed&call_type=inbound&assistant_id=" +
                                    assistant, limit=13)]
    check(got == want, "combined filters: %d calls, expected %d" % (len(got), len(want)))
    check(len([c for c in calls if c["call_status"] == "in-progress"]) > 0,
          "no call is in progress")


def check_errors(srv):
    for q in ("limit=101", "limit=-1", "limit=abc", "offset=x", "status=done",
              "call_type=fax", "limit=5&limit=6"):
        status, _, body = srv.get("/v1/calls?" + q)
        check(status == 400 and "error" in json.loads(body), "?%s: %d, not 400" % (q, status))
    status, headers, _ = srv.get("/v1/calls", key="wrong")
    check(status == 401 and "WWW-Authenticate" in headers, "a wrong key: %d, not 401" % status)
    status, _, _ = srv.get("/v1/calls", key=None)
    check(status == 401, "no key: %d, not 401" % status)
    status, _, _ = srv.get("/v1/nothing")
    check(status == 404, "an unknown path: %d, not 404" % status)
    check(srv.page("limit=0") == [], "limit=0 is not an empty array")
    check(srv.page("offset=99999999999999999999999") == [], "a huge offset is not empty")
    check(len(srv.page("")) == sim.DEFAULT_LIMIT, "no limit is not %d calls" % sim.DEFAULT_LIMIT)


def check_pipelined(srv, n=600):
    """n requests in one write, more than the server's 16 KB head buffer: all answered, in order."""
    req = b"GET /v1/calls?limit=1&offset=%d HTTP/1.1\r\nAuthorization: Bearer " + KEY.encode() + \
        b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"".join(req % i for i in range(n)) + b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
    out = b""
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    check(out.count(b"HTTP/1.1 200") == n + 1,
          "%d pipelined requests: %d answers" % (n + 1, out.count(b"HTTP/1.1 200")))


def check_dump(path, calls):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    check(lines[-1] == "", "the dump does not end with a newline")
    lines = lines[:-1]
    check(len(lines) == len(calls), "the dump has %d rows, not %d" % (len(lines), len(calls)))
    for line, c in zip(lines, calls):
        cols = [copy_unescape(f) for f in line.split("\t")]
        if len(cols) != len(TYPED) + 1:
            check(False, "dump row of %s has %d columns" % (c["id"], len(cols)))
            continue
        raw = json.loads(cols[-1], parse_float=Decimal)
        check(raw == c, "dump: raw of %s differs from the served record" % c["id"])
        for name, col in zip(TYPED, cols):
            v = c.get(name)
            if name == "appointment_booked":
                want = None if v is None else ("t" if v else "f")
            elif name == "duration_seconds":
                want, col = v, None if col is None else Decimal(col)
            else:
                want = v
            check(col == want, "dump: %s of %s is %r, not %r" % (name, c["id"], col, want))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("fastapi")
    p.add_argument("--calls", type=int, default=3000)
    a = p.parse_args()
    n = a.calls
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "calls.copy")
        dist = ["--in-progress-recent", "300", "--in-progress-stuck", "5"]
        srv = Server(a.fastapi, "--calls", str(n), "--dump-copy", dump, *dist)
        calls = check_list(srv, "oldest_first", n)
        check_filters(srv, calls)
        check_errors(srv)
        check_pipelined(srv)
        check_dump(dump, calls)
        ref = sim.CallStore(1, n, {"recent": 300, "stuck": 5, "fraction": None})
        want = shapes(e.obj for e in ref.entries)
        got = shapes(calls)
        check(set(got) == set(want), "fields differ from the simulator's: %s" %
              sorted(set(got) ^ set(want)))
        for k in set(got) & set(want):
            check(got[k] <= want[k], "%s takes JSON types %s, the simulator's %s" %
                  (k, sorted(got[k]), sorted(want[k])))
        status, _, body = srv.get("/stats", key=None)
        st = json.loads(body)
        check(status == 200 and st["calls"] == n and st["rate_limited"] == 0,
              "/stats: %d %s" % (status, st))
        err = srv.stop()
        check(re.search(r"requests=%d .*429s=0" % st["requests"], err) is not None,
              "SIGTERM did not print the counters: %r" % err)

        srv = Server(a.fastapi, "--calls", str(n), "--order", "newest_first", *dist)
        newest = check_list(srv, "newest_first", n)
        check(newest == calls[::-1], "newest_first is not oldest_first reversed")
        check_filters(srv, newest)
        srv.stop()

        # a long history still ends in the past: at the default, and at --newest-at
        srv = Server(a.fastapi, "--calls", "200000")
        last = srv.page("limit=1&offset=199999")
        check(sim.parse_ts(last[0]["call_started_at"]) <= time.time() * 1e6,
              "the newest of 200000 calls starts in the future: %s" % last[0]["call_started_at"])
        srv.stop()
        srv = Server(a.fastapi, "--calls", "1000", "--newest-at", "1767225600")
        last = srv.page("limit=1&offset=999")
        check(sim.parse_ts(last[0]["call_started_at"]) == 1767225600 * 10**6,
              "--newest-at: the newest call starts at %s" % last[0]["call_started_at"])
        srv.stop()

        # a burst of 3: the 4th request in the same instant is limited
        srv = Server(a.fastapi, "--calls", "10", "--rate", "3")
        codes = [srv.get("/v1/calls?limit=1")[:2] for _ in range(4)]
        check([c for c, _ in codes[:3]] == [200] * 3, "--rate 3: %s" % [c for c, _ in codes])
        check(codes[3][0] == 429 and codes[3][1].get("Retry-After") == "1",
              "--rate 3: the 4th request got %d %s" % codes[3])
        srv.stop()
    print("fastapi_check: %s" % ("%d failures" % len(FAILS) if FAILS else "OK"))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
