#!/usr/bin/env python3
"""The simulator's own tests: it must be faithful to shared/api/calls.md, or the
end-to-end tests prove nothing. Needs neither the binary nor PostgreSQL."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "vozagent_sim.py")
sys.path.insert(0, HERE)
import vozagent_sim as vs  # noqa: E402

TOKEN = "selftest-token"
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, flush=True)
    return cond


class SimProc:
    def __init__(self, *args):
        self.tmp = tempfile.mkdtemp(prefix="vozagent-simtest-")
        pf = os.path.join(self.tmp, "port")
        self.p = subprocess.Popen([sys.executable, SIM, "--port", "0", "--port-file", pf,
                                   "--token", TOKEN, "--quiet"] + list(args))
        t = time.monotonic()
        while not os.path.exists(pf):
            assert self.p.poll() is None and time.monotonic() - t < 10, "sim did not start"
            time.sleep(0.02)
        self.port = int(open(pf).read())

    def stop(self):
        self.p.terminate()
        self.p.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def req(self, method, path, body=None, token=TOKEN, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        if conn is None:
            c.close()
        return r.status, raw.decode("utf-8"), r

    def get(self, path, **kw):
        code, text, _ = self.req("GET", path, **kw)
        return code, json.loads(text, parse_float=Decimal, parse_int=Decimal)

    def ctl(self, path, body=None):
        code, text, _ = self.req("POST" if body is not None else "GET", "/_control/" + path, body)
        assert code == 200, "%s -> %s %s" % (path, code, text)
        return json.loads(text, parse_float=Decimal, parse_int=Decimal)

    def page_all(self, limit=100, query=""):
        out, off = [], 0
        while True:
            code, page = self.get("/v1/calls?limit=%d&offset=%d%s" % (limit, off, query))
            assert code == 200, page
            out += page
            if len(page) < limit:
                return out
            off += limit


def start(c):
    return vs.parse_ts(c["call_started_at"])


def test_api(s):
    code, body = s.get("/v1/calls", token=None)
    check(code == 401 and "error" in body, "no key: %s %s" % (code, body))
    code, text, _ = s.req("GET", "/v1/calls", token="wrong-token-xyz")
    check(code == 401 and "wrong-token-xyz" not in text, "wrong key: %s %s" % (code, text))
    for q in ("limit=101", "limit=-1", "limit=abc", "limit=", "limit=1.5", "offset=-1",
              "offset=x", "status=done", "call_type=sideways", "limit=5&limit=6", "status="):
        code, body = s.get("/v1/calls?" + q)
        check(code == 400 and isinstance(body, dict) and body.get("error"),
              "?%s should be 400 with an error: %s %s" % (q, code, body))
    code, body = s.get("/v1/calls?limit=0")
    check(code == 200 and body == [], "limit=0: %s %s" % (code, body))
    code, body = s.get("/v1/calls")
    check(code == 200 and len(body) == 50, "default limit 50: got %d" % len(body))
    code, body = s.get("/v1/calls?limit=100&offset=99999999999999999999")
    check(code == 200 and body == [], "offset past the end: %s" % body)
    code, body = s.get("/v1/calls?limit=10&unknown_param=1")
    check(code == 200 and len(body) == 10, "unknown parameters are ignored")
    code, body = s.get("/v2/calls")
    check(code == 404, "other paths 404")

    full = s.ctl("calls")
    check(len(full) == 300, "300 calls: %d" % len(full))
    check(s.page_all(100) == full and s.page_all(7) == full,
          "paging reassembles /_control/calls exactly")
    keys = [(start(c), c["id"]) for c in full]
    check(keys == sorted(keys), "oldest_first: sorted by instant, then id")
    check(len({c["id"] for c in full}) == len(full), "ids unique")
    check(any(a[0] == b[0] for a, b in zip(keys, keys[1:])), "some calls share a start")

    for f, field in (("status", "call_status"), ("contact_id", None), ("assistant_id", None),
                     ("call_type", None)):
        field = field or f
        val = full[5][field]
        want = [c for c in full if c.get(field) == val]
        got = s.page_all(13, "&%s=%s" % (f, val))
        check(got == want and 1 < len(want) < len(full),
              "filter %s=%s: %d of %d" % (f, val, len(got), len(want)))

    s.ctl("config", {"order": "newest_first"})
    rev = s.ctl("calls")
    check(rev == full[::-1] and s.page_all(100) == rev, "newest_first is the exact reverse")
    s.ctl("config", {"order": "oldest_first"})


def test_data(s):
    full = s.ctl("calls")
    text = s.req("GET", "/_control/calls")[1]
    idre = re.compile(r"^call-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$")
    check(all(idre.match(c["id"]) for c in full), "id format")
    check(len({c["assistant_id"] for c in full}) <= 6 and
          len({c["contact_id"] for c in full}) <= 40, "small pools of contacts and assistants")
    inprog = [c for c in full if c["call_status"] == "in-progress"]
    check(0.05 <= len(inprog) / len(full) <= 0.18, "about 10%% in progress: %d" % len(inprog))
    check(all(c.get("call_ended_at") is None and c.get("duration_seconds") is None for c in inprog),
          "in-progress calls have no end and no duration")
    check(any("duration_seconds" not in c for c in inprog) and
          any("duration_seconds" in c for c in inprog), "duration absent or null")
    newest = max(start(c) for c in full)
    check(any(newest - start(c) > 86400 * 10**6 for c in inprog), "some unfinished calls days old")
    check(set(c["call_status"] for c in full) == {"completed", "failed", "in-progress"}, "statuses")
    durs = [c["duration_seconds"] for c in full if c.get("duration_seconds") is not None]
    check(any(d != d.to_integral_value() for d in durs), "some non-integer durations")
    check(any(len(str(d).replace(".", "")) > 17 for d in durs), "durations beyond a double")
    check(re.search(r'"duration_seconds": ?\d+(\.\d+)?[eE]', text), "exponent-form durations")
    starts = [c["call_started_at"] for c in full]
    check(any("." in x for x in starts) and any(x.endswith("+00:00") for x in starts),
          "fractional seconds and +00:00 offsets")
    check(any(re.search(r"[+-]0[1-9]:\d\d$|-05:30$", c.get("call_ended_at") or "") for c in full),
          "some non-UTC end offsets")
    check(all(vs.parse_ts(c["call_ended_at"]) is not None for c in full if c.get("call_ended_at")),
          "all generated timestamps parse")
    check(any("call_intent" in c for c in full) and any("call_intent" not in c for c in full),
          "call_intent on some")
    check(any(c.get("lead_qualification", 0) is None for c in full) and
          any("lead_qualification" not in c for c in full), "lead null and absent")
    extras = {k for c in full for k in c} - {
        "id", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
        "call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
        "call_intent"}
    kinds = {type(c[k]).__name__ for c in full for k in extras if k in c}
    check({"str", "Decimal", "dict", "list", "bool", "NoneType"} <= kinds,
          "extra kinds: %s" % kinds)
    check(re.search(r"[^\x00-\x7f]", text) and "\\u" in text and "\\\\" in text and
          '\\"' in text and "\\n" in text and "\\t" in text,
          "raw UTF-8, \\u escapes, backslashes, quotes, newlines, tabs on the wire")
    check(re.search(r"\\ud83[cd]\\ud[c-f]", text), "surrogate pairs on the wire")
    check(re.search(r"\d{20}", text), "integers beyond int64")


def test_control(s):
    base = s.ctl("calls")
    newest = max(start(c) for c in base)
    added = s.ctl("add", {"count": 5})["added"]
    check(len(added) == 5 and all(start(c) > newest for c in added), "add count: after newest")
    newest = max(start(c) for c in s.ctl("calls"))
    late = s.ctl("add", {"late": 4, "within_seconds": 3600})["added"]
    check(len(late) == 4 and all(newest - 3600 * 10**6 <= start(c) < newest for c in late),
          "late arrivals within the window, before the newest")
    full = s.ctl("calls")
    pos = [i for i, c in enumerate(full) if c["id"] in {x["id"] for x in late}]
    check(all(i < len(full) - 1 for i in pos), "late calls land inside the list, not at its end")

    rec = {"id": "call-00000000-0000-0000-0001", "duration_seconds": "abc",
           "call_started_at": "garbage", "nested": {"a": [1, 2.50, None]},
           "big": Decimal("180.123456789012345678")}
    # Decimal is not JSON-serializable by json.dumps: send text.
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    c.request("POST", "/_control/add", body=json.dumps({"records": [rec]}, default=str)
              .replace('"180.123456789012345678"', "180.123456789012345678"))
    r = json.loads(c.getresponse().read(), parse_float=Decimal)
    check(r["added"][0]["big"] == Decimal("180.123456789012345678"), "verbatim numbers kept")
    full = s.ctl("calls")
    check(full[-1]["id"] == rec["id"] and full[-1]["duration_seconds"] == "abc",
          "a record with an unparseable start sorts as the newest; kept verbatim")
    raw = '{"id":"call-00000000-0000-0000-0002","call_started_at":"2001-01-01T00:00:00Z","x":1.10}'
    s.ctl("add", {"raw_records": [raw]})
    check(raw in s.req("GET", "/_control/calls")[1], "raw_records served byte for byte")
    check(s.ctl("calls")[0]["id"] == "call-00000000-0000-0000-0002", "sorted by its start")

    inprog = [c for c in s.ctl("calls") if c.get("call_status") == "in-progress"]
    ch = s.ctl("finish", {"ids": [inprog[0]["id"]]})["changed"]
    check(ch[0]["call_status"] in ("completed", "failed") and ch[0].get("call_ended_at") and
          ch[0].get("duration_seconds") is not None and "appointment_booked" in ch[0],
          "finish fills in the end: %s" % ch[0])
    check([c for c in s.ctl("calls") if c["id"] == ch[0]["id"]] == ch, "finished call served")
    ch = s.ctl("finish", {"count": 3, "pick": "oldest"})["changed"]
    check(len(ch) == 3, "finish count")
    code, text, _ = s.req("POST", "/_control/finish", {"ids": [ch[0]["id"]]})
    check(code == 400, "finishing a finished call is an error")
    n = len(s.ctl("calls"))
    d = s.ctl("delete", {"ids": [ch[0]["id"]]})["deleted"]
    d += s.ctl("delete", {"count": 2})["deleted"]
    full = s.ctl("calls")
    check(len(full) == n - 3 and not {x["id"] for x in d} & {c["id"] for c in full}, "delete")
    u = s.ctl("update", {"ids": [full[3]["id"]], "set": {"call_intent": "edited"},
                         "unset": ["contact_id"]})["changed"][0]
    check(u["call_intent"] == "edited" and "contact_id" not in u, "update")
    code, text, _ = s.req("POST", "/_control/add", {"bogus": 1})
    check(code == 400 and "error" in json.loads(text), "bad control body -> 400")

    s.ctl("requests/clear", {})
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    for off in (0, 10, 20):
        s.req("GET", "/v1/calls?limit=10&offset=%d" % off, conn=c)
    s.req("GET", "/v1/calls?limit=500")
    log = s.ctl("requests")["requests"]
    check([(x["offset"], x["status"]) for x in log] ==
          [(0, 200), (10, 200), (20, 200), (None, 400)],
          "request log: %s" % [(x["offset"], x["status"]) for x in log])
    check(len({x["client"] for x in log[:3]}) == 1, "keep-alive: one connection for three pages")
    check(log[0]["returned"] == 10 and log[0]["params"] == {"limit": "10", "offset": "0"},
          "log entry: %s" % log[0])

    s.ctl("config", {"delay_ms": 300})
    t = time.monotonic()
    s.get("/v1/calls?limit=1")
    check(time.monotonic() - t >= 0.29, "delay_ms delays the answer")
    s.ctl("config", {"delay_ms": 0})
    code, text, _ = s.req("POST", "/_control/config", {"order": "sideways"})
    check(code == 400, "bad config rejected")


def raw_get(port, path, delay_between=False):
    """(headers, body pieces as received) of one request, read off the socket."""
    so = socket.create_connection(("127.0.0.1", port), timeout=10)
    so.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (path, TOKEN)).encode())
    pieces = []
    while True:
        b = so.recv(65536)
        if not b:
            break
        pieces.append(b)
    so.close()
    return pieces


def test_streaming(s):
    s.ctl("config", {"chunk_delay_ms": 60, "write_size": 2000})
    pieces = raw_get(s.port, "/v1/calls?limit=40")
    check(len(pieces) >= 3, "a page arrives in several pieces (%d)" % len(pieces))
    data = b"".join(pieces)
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"Content-Length: (\d+)", head)
    check(m and int(m.group(1)) == len(body), "Content-Length matches")
    s.ctl("config", {"chunk_delay_ms": 0, "transfer": "chunked", "write_size": 500})
    head, body = b"".join(raw_get(s.port, "/v1/calls?limit=40")).split(b"\r\n\r\n", 1)
    check(b"chunked" in head, "chunked transfer")
    out, n = b"", 0
    while True:
        size, rest = body.split(b"\r\n", 1)
        size = int(size, 16)
        if size == 0:
            break
        out, body, n = out + rest[:size], rest[size + 2:], n + 1
    check(n >= 3 and len(json.loads(out)) == 40, "chunked body decodes (%d chunks)" % n)
    # http.client reads it too
    code, page = s.get("/v1/calls?limit=40")
    check(code == 200 and len(page) == 40, "chunked page via http.client")
    s.ctl("config", {"transfer": "length", "write_size": 4096})


def test_determinism():
    a, b, c = SimProc("--seed", "5", "--calls", "120"), SimProc("--seed", "5", "--calls", "120"), \
        SimProc("--seed", "6", "--calls", "120", "--order", "newest_first")
    try:
        ta = a.req("GET", "/_control/calls")[1]
        check(ta == b.req("GET", "/_control/calls")[1], "same seed, same data")
        check(ta != c.req("GET", "/_control/calls")[1], "another seed, other data")
        a.ctl("add", {"count": 3})
        b.ctl("add", {"count": 3})
        check(a.req("GET", "/_control/calls")[1] == b.req("GET", "/_control/calls")[1],
              "same seed, same control calls, same data")
        full = c.ctl("calls")
        keys = [(start(x), x["id"]) for x in full]
        check(keys == sorted(keys, reverse=True), "--order newest_first")
        r = c.ctl("reset", {"seed": 5, "calls": 120})
        c.ctl("config", {"order": "oldest_first"})
        check(r["count"] == 120 and c.req("GET", "/_control/calls")[1] == ta, "reset regenerates")
    finally:
        for s in (a, b, c):
            s.stop()


def main():
    s = SimProc("--seed", "3", "--calls", "300")
    try:
        for t in (test_api, test_data, test_control, test_streaming):
            print("--", t.__name__, flush=True)
            t(s)
    finally:
        s.stop()
    print("-- test_determinism", flush=True)
    test_determinism()
    print("%d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
