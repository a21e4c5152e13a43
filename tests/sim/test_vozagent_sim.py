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
            assert self.p.poll() is None and time.monotonic() - t < 60, "sim did not start"
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

    # repeat_last_page: no page is ever short; past the end, the last full page again
    every = s.ctl("calls")
    n = len(every)
    s.ctl("config", {"repeat_last_page": True})
    _, tail = s.get("/v1/calls?limit=10&offset=%d" % (n - 3))
    _, past = s.get("/v1/calls?limit=10&offset=%d" % (n + 500))
    _, mid = s.get("/v1/calls?limit=10&offset=5")
    s.ctl("config", {"repeat_last_page": False})
    _, short = s.get("/v1/calls?limit=10&offset=%d" % (n - 3))
    last = [c["id"] for c in every[n - 10:]]
    check([c["id"] for c in tail] == last and [c["id"] for c in past] == last,
          "repeat_last_page: pages near and past the end are the last full page")
    check([c["id"] for c in mid] == [c["id"] for c in every[5:15]],
          "repeat_last_page: full pages are served as usual")
    check(len(short) == 3, "repeat_last_page off: the last page is short again")


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


# ------------------------------------------------------------ issue 3 ----

def ids(calls):
    return [c["id"] for c in calls]


def calls_log(s, after=0):
    return [r for r in s.ctl("requests")["requests"]
            if r["seq"] > after and r["path"].rstrip("/") == "/v1/calls"]


def test_mutator():
    s = SimProc("--seed", "11", "--calls", "400")
    try:
        # A page is the snapshot taken before the mutations its own request triggers.
        s.ctl("mutator", {"seed": 1, "every": 1, "per": 1, "kinds": {"delete": 1}})
        for off in (0, 50, 100, 350):
            before = s.ctl("calls")
            code, page = s.get("/v1/calls?limit=50&offset=%d" % off)
            after = s.ctl("calls")
            m = s.ctl("mutator")["mutations"][-1]
            check(code == 200 and page == before[off:off + 50],
                  "offset %d: the page shows the list before its own mutation" % off)
            check(ids(after) == [i for i in ids(before) if i != m["id"]] and
                  before[int(m["pos"])]["id"] == m["id"],
                  "offset %d: exactly the logged call deleted, at its logged position" % off)
            check(m["seq"] == calls_log(s)[-1]["seq"], "mutation carries the request's seq")
            rel = "behind" if m["pos"] < off else "in_page" if m["pos"] < off + 50 else "ahead"
            check(m["rel"] == rel, "rel %s for pos %d offset %d" % (m["rel"], m["pos"], off))
        # A faulted request counts too; control calls do not.
        s.ctl("faults", {"queue": ["503"]})
        n0 = s.ctl("mutator")["total"]
        code, _ = s.get("/v1/calls?limit=5")
        m = s.ctl("mutator")
        check(code == 503 and m["total"] == n0 + 1 and m["mutations"][-1]["rel"] is not None and
              m["mutations"][-1]["seq"] == calls_log(s)[-1]["seq"],
              "a faulted request triggers its mutations: %s" % m["mutations"][-1])
        s.ctl("mutator", {"off": True})
        n0 = s.ctl("mutator")["total"]
        s.get("/v1/calls?limit=5")
        m = s.ctl("mutator")
        check(not m["active"] and m["total"] == n0 and m["mutations"], "off: no more, log kept")

        # every / per / max, all kinds, deletes behind and ahead of the pass.
        init = s.ctl("calls")
        init_by = {c["id"]: c for c in init}
        newest0 = max(start(c) for c in init)
        seq0 = s.ctl("state")["requests"] and calls_log(s)[-1]["seq"]
        cfg = {"seed": 42, "every": 3, "per": 2, "max": 60, "late_within_seconds": 1800,
               "kinds": {"new": 1, "late": 1, "finish": 1, "delete": 3, "update_old": 1}}
        r = s.ctl("mutator", cfg)
        check(r["active"] and r["total"] == 0 and r["config"]["every"] == 3, "configured: %s" % r)
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        for i in range(100):
            s.req("GET", "/v1/calls?limit=20&offset=%d" % ((i * 20) % 400), conn=c)
        c.close()
        m = s.ctl("mutator")
        muts = m["mutations"]
        check(m["total"] == 60 == len(muts) == sum(m["counts"].values()) and not m["active"],
              "max 60 then inactive: %s %s" % (m["total"], m["counts"]))
        check(all(m["counts"][k] > 0 for k in vs.MUTATION_KINDS), "every kind: %s" % m["counts"])
        check(m["requests_counted"] == 90, "stopped counting at max: %s" % m["requests_counted"])
        log = calls_log(s, seq0)
        trig = [x["seq"] for x in log[2::3]]
        check([mu["seq"] for mu in muts] == [q for q in trig for _ in (0, 1)][:60],
              "2 mutations after every 3rd request")
        rels = {mu["rel"] for mu in muts if mu["kind"] == "delete"}
        check({"behind", "ahead"} <= rels, "deletes behind and ahead of the pass: %s" % rels)
        final = s.ctl("calls")
        fin = {x["id"]: x for x in final}
        gone = {mu["id"] for mu in muts if mu["kind"] == "delete"}
        born = [mu["id"] for mu in muts if mu["kind"] in ("new", "late")]
        check(set(fin) == (set(init_by) | set(born)) - gone, "final ids = initial + added - deleted")
        for mu in muts:
            cur = fin.get(mu["id"])
            if mu["kind"] == "new":
                check(vs.parse_ts(mu["started_at"]) > newest0, "new: after the newest")
            elif mu["kind"] == "late":
                t = vs.parse_ts(mu["started_at"])
                check(newest0 - 1800 * 10**6 <= t < max(start(x) for x in final),
                      "late: within 1800 s before the newest")
            elif mu["kind"] == "finish" and cur is not None:
                check(cur["call_status"] == mu["status"] in ("completed", "failed") and
                      cur.get("call_ended_at") and cur.get("duration_seconds") is not None,
                      "finish: %s" % cur)
            elif mu["kind"] == "update_old" and cur is not None:
                old = init_by.get(mu["id"])
                check(old is not None and old["call_status"] in ("completed", "failed") and
                      newest0 - start(old) >= 86400 * 10**6 and
                      cur.get(mu["field"]) != old.get(mu["field"]) and
                      {k: v for k, v in cur.items() if k != mu["field"]} ==
                      {k: v for k, v in old.items() if k != mu["field"]},
                      "update_old edits one field of an old finished call: %s" % mu)

        # delete_window: deletions near the page, on both sides.
        s.ctl("mutator", {"seed": 3, "every": 1, "per": 1, "kinds": {"delete": 1},
                          "delete_window": 5})
        for off in range(100, 300, 10):
            s.get("/v1/calls?limit=10&offset=%d" % off)
        muts = s.ctl("mutator")["mutations"]
        offs = list(range(100, 300, 10))
        check(len(muts) == 20 and
              all(o - 5 <= mu["pos"] < o + 15 for mu, o in zip(muts, offs)),
              "delete_window 5: %s" % [(mu["pos"], o) for mu, o in zip(muts, offs)])
        check({"behind", "in_page", "ahead"} <= {mu["rel"] for mu in muts},
              "window deletes on both sides")

        # Timed mode.
        n = len(s.ctl("calls"))
        s.ctl("mutator", {"seed": 1, "interval_ms": 30, "per": 1, "kinds": {"new": 1},
                          "max": 4})
        t = time.monotonic()
        while s.ctl("mutator")["active"] and time.monotonic() - t < 5:
            time.sleep(0.05)
        m = s.ctl("mutator")
        check(not m["active"] and m["counts"]["new"] == 4 and len(s.ctl("calls")) == n + 4,
              "timed mutator: %s" % m["counts"])

        for bad in ({"every": 1, "interval_ms": 10}, {}, {"every": 0},
                    {"every": 1, "kinds": {"explode": 1}}, {"every": 1, "kinds": {"new": 0}},
                    {"every": 1, "bogus": 1}, {"every": 1, "max": -1}, {"off": True, "every": 1}):
            code, text, _ = s.req("POST", "/_control/mutator", bad)
            check(code == 400 and "error" in json.loads(text), "bad mutator %s -> 400" % bad)
    finally:
        s.stop()


def test_mutator_determinism():
    """Same seed, same requests: the same mutations and the same data, in either order."""
    runs = []
    for order in ("newest_first", "newest_first", "oldest_first"):
        s = SimProc("--seed", "21", "--calls", "250", "--order", order)
        try:
            s.ctl("mutator", {"seed": 9, "every": 2, "per": 3, "late_within_seconds": 600,
                              "kinds": {"new": 2, "late": 1, "finish": 1, "delete": 2,
                                        "update_old": 1}})
            for off in (0, 40, 80, 120, 160, 200, 240, 0, 40, 80):
                s.get("/v1/calls?limit=40&offset=%d" % off)
            m = s.ctl("mutator")
            s.ctl("config", {"order": "oldest_first"})
            runs.append(([{k: v for k, v in mu.items() if k not in ("time", "pos", "rel")}
                          for mu in m["mutations"]], s.req("GET", "/_control/calls")[1]))
        finally:
            s.stop()
    check(runs[0] == runs[1] and len(runs[0][0]) == 15, "mutator replays for a seed")
    check(runs[0] == runs[2], "the same mutations whatever the order")


def test_in_progress_dist():
    s = SimProc("--seed", "4", "--calls", "20000", "--in-progress-recent", "100",
                "--in-progress-stuck", "5")
    try:
        full = s.ctl("calls")
        newest = max(start(c) for c in full)
        idx = [i for i, c in enumerate(full) if c["call_status"] == "in-progress"]
        recent = [i for i in idx if i >= len(full) - 102]
        stuck = [i for i in idx if i < len(full) - 102]
        check(len(full) == 20000 and 15 <= len(recent) <= 50,
              "about 30%% of the 100 newest in progress: %d" % len(recent))
        check(len(stuck) == 5 and all(newest - start(full[i]) >= 2 * 86400 * 10**6
                                      for i in stuck), "5 calls stuck for days: %s" % stuck)
        inprog = s.page_all(100, "&status=in-progress")
        check(inprog == [full[i] for i in idx] and len(inprog) <= 200,
              "in-progress listing fits in two pages: %d" % len(inprog))
        st = s.ctl("state")
        check(st["in_progress"] == len(idx) and st["generation"]["in_progress_recent"] == 100,
              "state: %s" % st["generation"])
        s.ctl("reset", {"seed": 9, "calls": 3000, "in_progress_recent": 50,
                        "in_progress_stuck": 3, "in_progress_fraction": 1.0})
        full = s.ctl("calls")
        idx = [i for i, c in enumerate(full) if c["call_status"] == "in-progress"]
        check(len(idx) == 53 and idx[3:] == list(range(2950, 3000)),
              "reset keys: the 50 newest and 3 stuck: %d" % len(idx))
        s.ctl("reset", {"seed": 9, "calls": 3000})
        full = s.ctl("calls")
        idx = [i for i, c in enumerate(full) if c["call_status"] == "in-progress"]
        check(len([i for i in idx if i < 2898]) == 5 and len(idx) < 60,
              "reset without the keys keeps the command line's distribution")
        s.ctl("reset", {"seed": 9, "calls": 300, "in_progress_recent": None,
                        "in_progress_stuck": None})
        want = "[\n" + ",\n".join(vs.CallStore(9, 300).all_texts("oldest_first")) + "\n]\n"
        check(s.req("GET", "/_control/calls")[1] == want, "null keys: the default distribution")
        code, text, _ = s.req("POST", "/_control/reset", {"calls": 10, "in_progress_recent": -1})
        check(code == 400, "bad distribution rejected")
    finally:
        s.stop()
    p = subprocess.run([sys.executable, SIM, "--in-progress-fraction", "0.5"],
                       capture_output=True, timeout=10)
    check(p.returncode == 2 and b"in-progress-recent" in p.stderr, "fraction alone: usage error")


# ------------------------------------------------------------ issue 4 ----

def raw_request(port, path, timeout=10, deadline=None):
    """Send one GET on a raw socket, read until EOF, error or deadline.
    -> (bytes received, exception or None, [recv sizes])"""
    so = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    so.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (path, TOKEN)).encode())
    data, err, sizes = b"", None, []
    end = None if deadline is None else time.monotonic() + deadline
    try:
        while end is None or time.monotonic() < end:
            b = so.recv(65536)
            if not b:
                break
            data += b
            sizes.append(len(b))
    except OSError as e:
        err = e
    so.close()
    return data, err, sizes


def split_head(data):
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    return head, body, (int(m.group(1)) if m else None)


def test_faults():
    s = SimProc("--seed", "8", "--calls", "300")
    try:
        q = lambda *f: s.ctl("faults", {"queue": list(f)})   # noqa: E731
        normal = s.req("GET", "/v1/calls?limit=30")[1].encode()
        s.ctl("requests/clear", {})

        # HTTP status faults.
        q("401", "403", "400", "500", "503", {"kind": "429", "retry_after": "2"},
          {"kind": "429", "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
          {"kind": "429", "retry_after": None}, {"kind": "503", "retry_after": 7}, "502", "504")
        for want, ra, ctype in ((401, None, "json"), (403, None, "json"), (400, None, "json"),
                                (500, None, "json"), (503, None, "json"), (429, "2", "json"),
                                (429, "Wed, 21 Oct 2015 07:28:00 GMT", "json"),
                                (429, None, "json"), (503, "7", "json"), (502, None, "html"),
                                (504, None, "html")):
            code, text, r = s.req("GET", "/v1/calls?limit=30")
            ok = code == want and r.getheader("Retry-After") == ra
            if ctype == "json":
                ok = ok and isinstance(json.loads(text).get("error"), str)
            else:
                ok = ok and "text/html" in r.getheader("Content-Type") and "<html>" in text
            check(ok, "fault %d: %s %s %s" % (want, code, r.getheader("Retry-After"), text[:80]))
        code, text, _ = s.req("GET", "/v1/calls?limit=30")
        check(code == 200 and text.encode() == normal, "after the queue: normal pages")
        log = calls_log(s)
        check([x["fault"] for x in log] == ["401", "403", "400", "500", "503", "429", "429",
                                            "429", "503", "502", "504", None] and
              [x["status"] for x in log][:3] == [401, 403, 400], "faults in the request log")

        # Only a request that would get a page consumes a fault.
        q("503")
        check(s.get("/v1/calls?limit=500")[0] == 400 and
              s.get("/v1/calls", token="nope")[0] == 401 and
              s.get("/v1/calls?limit=3")[0] == 503 and s.get("/v1/calls?limit=3")[0] == 200,
              "400/401 from the simulator do not consume a fault")

        # reset: RST, no answer.
        q("reset", "reset")
        data, err, _ = raw_request(s.port, "/v1/calls?limit=30")
        check(data == b"" and isinstance(err, ConnectionResetError), "reset: RST (%r)" % err)
        try:
            s.req("GET", "/v1/calls?limit=30")
            check(False, "reset: http.client got an answer")
        except ConnectionResetError:
            pass            # RemoteDisconnected is one too

        # hang: a client timeout fires; other requests are served meanwhile.
        q({"kind": "hang", "seconds": 30})
        t = time.monotonic()
        hc = http.client.HTTPConnection("127.0.0.1", s.port, timeout=0.5)
        try:
            hc.request("GET", "/v1/calls?limit=30", headers={"Authorization": "Bearer " + TOKEN})
            hc.getresponse()
            check(False, "hang: got an answer")
        except socket.timeout:
            check(time.monotonic() - t >= 0.45, "hang: the client timed out")
        t = time.monotonic()
        code, text, _ = s.req("GET", "/v1/calls?limit=30")
        check(code == 200 and time.monotonic() - t < 2, "hang does not block other requests")
        hc.close()
        t = time.monotonic()
        while time.monotonic() - t < 5:
            out = [x for x in s.ctl("faults")["injected"] if x["kind"] == "hang"][-1]["outcome"]
            if out and "client closed" in out:
                break
            time.sleep(0.1)
        check("client closed" in (out or ""), "hang notices the client leaving: %s" % out)
        q({"kind": "hang", "seconds": 1})
        t = time.monotonic()
        data, err, _ = raw_request(s.port, "/v1/calls?limit=30", timeout=10)
        check(data == b"" and err is None and 0.9 <= time.monotonic() - t < 5,
              "hang with a cap: closed with no answer after ~1 s (%r, %.2f s)"
              % (err, time.monotonic() - t))

        # slow: the whole page, trickled.
        q({"kind": "slow", "bytes_per_second": 8000})
        t = time.monotonic()
        data, err, sizes = raw_request(s.port, "/v1/calls?limit=30")
        el = time.monotonic() - t
        head, body, cl = split_head(data)
        check(err is None and body == normal and cl == len(normal) and
              el >= 0.8 * len(normal) / 8000 and len(sizes) >= 5,
              "slow: full page in %.2f s, %d pieces, %d bytes" % (el, len(sizes), len(body)))
        q({"kind": "slow", "bytes_per_second": 200})
        data, err, sizes = raw_request(s.port, "/v1/calls?limit=30", timeout=0.3, deadline=0.6)
        head, body, cl = split_head(data)
        check(err is None and cl == len(normal) and 0 < len(body) < 400,
              "slow: no single read times out, but a 0.6 s deadline gets %d of %d bytes"
              % (len(body), cl or 0))
        t = time.monotonic()
        while time.monotonic() - t < 5:
            out = [x for x in s.ctl("faults")["injected"] if x["kind"] == "slow"][-1]["outcome"]
            if out and "went away" in out:
                break
            time.sleep(0.1)
        check("went away" in (out or ""), "slow: the client left: %s" % out)

        # cut: full Content-Length, part of the body, then EOF (or RST).
        q("cut", "cut")
        data, err, _ = raw_request(s.port, "/v1/calls?limit=30")
        head, body, cl = split_head(data)
        check(err is None and cl == len(normal) and 0 < len(body) < cl and
              normal.startswith(body) and body.count(b'"id"') >= 2,
              "cut: %d of %d bytes, a prefix of the page" % (len(body), cl or 0))
        try:
            s.req("GET", "/v1/calls?limit=30")
            check(False, "cut: http.client read a whole body")
        except http.client.IncompleteRead:
            pass
        q({"kind": "cut", "transfer": "chunked", "rst": True, "fraction": 0.3})
        data, err, _ = raw_request(s.port, "/v1/calls?limit=30")
        head, body, cl = split_head(data)
        check(b"chunked" in head and not body.endswith(b"0\r\n\r\n") and
              (err is None or isinstance(err, ConnectionResetError)),
              "cut chunked + RST: %r %r" % (err, body[-20:]))

        # 200 bodies that are not a page.
        q("html", "json_error", "invalid_json", "not_objects")
        code, text, r = s.req("GET", "/v1/calls?limit=30")
        check(code == 200 and r.getheader("Content-Type").startswith("text/html") and
              text.startswith("<!DOCTYPE html>"), "html")
        code, body = s.get("/v1/calls?limit=30")
        check(code == 200 and body == {"error": "internal"}, "json_error: %s" % body)
        code, text, _ = s.req("GET", "/v1/calls?limit=30")
        try:
            json.loads(text)
            check(False, "invalid_json parsed")
        except ValueError:
            check(code == 200 and text.startswith("[") and text.count('"id"') >= 30,
                  "invalid_json starts like the page")
        code, body = s.get("/v1/calls?limit=30")
        check(code == 200 and body == [1, 2, 3], "not_objects: %s" % body)

        # huge: a valid array larger than the limit, streamed, within limit calls.
        for spec in ({"kind": "huge", "bytes": 3000000},
                     {"kind": "huge", "bytes": 2000000, "transfer": "chunked"}):
            q(spec)
            code, text, r = s.req("GET", "/v1/calls?limit=30")
            page = json.loads(text)
            check(code == 200 and len(text.encode()) > spec["bytes"] and len(page) == 30 and
                  json.dumps(page[:29]) == json.dumps(json.loads(normal)[:29]) and
                  len(page[-1]["padding"]) > spec["bytes"] - 20000,
                  "huge %s: %d bytes" % (spec, len(text)))

        # oversize: factor x limit calls from offset, as the list holds them.
        q({"kind": "oversize", "factor": 3})
        code, text, _ = s.req("GET", "/v1/calls?limit=10")
        page = json.loads(text)
        check(code == 200 and json.dumps(page) == json.dumps(json.loads(normal)),
              "oversize: %d calls for limit=10" % len(page))

        # body_hex: a status fault's body exactly as given, UTF-8 or not.
        q({"kind": "503", "body_hex": "6275737920eda080"})
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/v1/calls?limit=30", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        raw = r.read()
        c.close()
        check(r.status == 503 and raw == b"busy \xed\xa0\x80", "body_hex: %r" % raw)

        # bad_records: the page plus a record without id, a numeric id and a duplicate.
        q("bad_records")
        code, page = s.get("/v1/calls?limit=30")
        real = json.loads(normal, parse_float=Decimal, parse_int=Decimal)
        idl = [c.get("id") for c in page]
        check(code == 200 and len(page) == 33 and idl.count(None) == 1 and
              sum(1 for i in idl if isinstance(i, Decimal)) == 1 and
              len([i for i in idl if isinstance(i, str)]) == 31 and
              len({i for i in idl if isinstance(i, str)}) == 30 and
              [c for c in page if isinstance(c.get("id"), str)][:30] == real,
              "bad_records: %s" % idl[:3])

        # nul: NUL in keys and values, a 1 MiB string, deep nesting; still valid JSON.
        q("nul", {"kind": "nul", "nul_in_id": True, "depth": 300, "string_bytes": 100000})
        code, text, _ = s.req("GET", "/v1/calls?limit=30")
        page = json.loads(text)

        def depth(v):
            if isinstance(v, dict):
                return 1 + max([depth(x) for x in v.values()] or [0])
            if isinstance(v, list):
                return 1 + max([depth(x) for x in v] or [0])
            return 0
        extra = page[30:]
        check(code == 200 and json.dumps(page[:30]) == json.dumps(json.loads(normal)) and
              any("\0" in k for c in extra for k in c) and
              any(isinstance(v, str) and "\0" in v for c in extra for v in c.values()) and
              any(isinstance(v, str) and len(v.encode()) >= 1 << 20
                  for c in extra for v in c.values()) and
              max(depth(c) for c in extra) >= 200 and "\\u0000" in text,
              "nul: hostile records after the page")
        code, text, _ = s.req("GET", "/v1/calls?limit=30")
        page = json.loads(text)
        check(any("\0" in c["id"] for c in page[30:]) and
              max(depth(c) for c in page[30:]) >= 300, "nul with nul_in_id and depth 300")

        rep = s.ctl("faults")
        kinds = [x["kind"] for x in rep["injected"]]
        check(kinds[-3:] == ["bad_records", "nul", "nul"] and rep["counts"]["cut"] == 3 and
              rep["queue"] == [] and all(x["outcome"] for x in rep["injected"]),
              "GET /_control/faults reports: %s" % rep["counts"])

        # Random rate: seeded, reproducible.
        patterns = []
        for _ in range(2):
            s.ctl("faults", {"clear": True})
            s.ctl("faults", {"rate": 0.3, "seed": 5, "kinds": ["500", "503", "html"]})
            seq0 = calls_log(s)[-1]["seq"]
            for i in range(60):
                s.req("GET", "/v1/calls?limit=5&offset=%d" % i)
            patterns.append([x["fault"] for x in calls_log(s, seq0)])
        hit = [f for f in patterns[0] if f]
        check(patterns[0] == patterns[1] and 8 <= len(hit) <= 30 and
              set(hit) == {"500", "503", "html"}, "rate 0.3: %d of 60, reproducible" % len(hit))
        rep = s.ctl("faults")
        check(all(x["source"] == "rate" for x in rep["injected"]) and
              len(rep["injected"]) == len(hit), "rate faults reported")
        s.ctl("faults", {"rate": 1.0, "kinds": ["500"]})
        s.ctl("faults", {"queue": ["503"]})
        check([s.get("/v1/calls?limit=1")[0] for _ in range(3)] == [503, 500, 500],
              "the queue goes before the rate")
        s.ctl("faults", {"rate": 1.0, "seed": 2})
        check([k["kind"] for k in s.ctl("faults")["rate"]["kinds"]] ==
              list(vs.DEFAULT_RANDOM_FAULTS), "default random kinds")
        s.ctl("faults", {"queue": ["500"]})
        s.ctl("faults", {"queue": ["502"], "append": True})
        check([k["kind"] for k in s.ctl("faults")["queue"]] == ["500", "502"], "append")
        r = s.ctl("faults", {"clear": True})
        check(r == {"queue": [], "rate": None, "injected": [], "counts": {}} and
              s.get("/v1/calls?limit=1")[0] == 200, "clear")
        for bad in ({"queue": ["boom"]}, {"queue": [{"kind": "hang", "seconds": -1}]},
                    {"queue": [{"kind": "500", "retry_after": 1.5}]},
                    {"queue": [{"kind": "reset", "x": 1}]}, {"rate": 2}, {"seed": 1},
                    {"queue": "500"}, {"whatever": 1}, {"clear": 1}):
            code, text, _ = s.req("POST", "/_control/faults", bad)
            check(code == 400 and "error" in json.loads(text), "bad faults %s -> 400" % bad)
    finally:
        s.stop()


def main():
    s = SimProc("--seed", "3", "--calls", "300")
    try:
        for t in (test_api, test_data, test_control, test_streaming):
            print("--", t.__name__, flush=True)
            t(s)
    finally:
        s.stop()
    for t in (test_determinism, test_mutator, test_mutator_determinism, test_in_progress_dist,
              test_faults):
        print("--", t.__name__, flush=True)
        t0 = time.monotonic()
        t()
        print("   %.1f s" % (time.monotonic() - t0), flush=True)
    print("%d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
