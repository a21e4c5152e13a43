#!/usr/bin/env python3
"""vozagent_sim - a local simulator of the VozAgent call-listing API.

Faithful to ../shared/api/calls.md, for the end-to-end tests and scripts/demo.
Python 3 standard library only.

API (what the daemon talks to)
  GET /v1/calls     Authorization: Bearer <token>, else 401 {"error": ...}.
                    limit 0-100 (default 50), offset >= 0 (default 0), filters
                    status (completed|in-progress|failed), contact_id,
                    assistant_id, call_type (inbound|outbound); anything else
                    invalid -> 400 {"error": ...}. Unknown parameters are ignored.
                    Body: a bare JSON array sorted by call_started_at (as an
                    instant), ties by id, in the configured order, written in
                    several pieces (Content-Length, or chunked on request).

Control interface (no auth, JSON in and out; errors are 400 {"error": ...})
  GET  /_control/calls            every call, API order, records exactly as served
                                  (a bare array, like /v1/calls without paging)
  GET  /_control/state            {"order", "count", "in_progress", "newest_started_at",
                                   "config", "requests"}
  POST /_control/add              {"count": N [, "in_progress": 0.3]}  N calls after the newest
                                  {"late": N, "within_seconds": S}     N calls started up to S s
                                                                       before the newest one
                                  {"records": [{...}, ...]}            exact records, verbatim
                                  {"raw_records": ["<json text>", ...]} exact bytes, verbatim
                                  -> {"added": [records]}
  POST /_control/finish           {"count": N [, "pick": "random|oldest|newest"]} or {"ids": [...]}
                                  in-progress -> completed/failed, end time, duration,
                                  booking, qualification filled in -> {"changed": [records]}
  POST /_control/update           {"ids": [...], "set": {...}, "unset": ["field", ...]}
                                  -> {"changed": [records]}
  POST /_control/delete           {"ids": [...]} or {"count": N} -> {"deleted": [records]}
  GET  /_control/config           -> {"config": {...}}
  POST /_control/config           any of {"order": "oldest_first|newest_first",
                                  "delay_ms": N (sleep before each /v1/calls answer),
                                  "chunk_delay_ms": N (sleep between body pieces),
                                  "write_size": N (bytes per body piece),
                                  "transfer": "length|chunked", "token": "..."}
                                  -> {"config": {...}}
  GET  /_control/requests         -> {"requests": [{"seq", "time", "method", "path",
                                  "params", "limit", "offset", "status", "returned",
                                  "auth", "client", "fault", "elapsed_ms"}, ...]}
                                  (every request to /v1/..., oldest first)
  POST /_control/requests/clear   -> {"cleared": N}
  POST /_control/reset            {"seed": N, "calls": N} regenerate -> {"count": N}

Data is deterministic for a seed (and a given sequence of control calls).

Extension points for later issues: every data change goes through CallStore
methods under one lock, so a background mutator (live changes while a pass
pages) can call them too; /v1/calls answers go through Handler._serve_calls,
whose fault_for() step is where a fault queue / random fault rate plugs in.
"""

import argparse
import bisect
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUSES = ("completed", "in-progress", "failed")
CALL_TYPES = ("inbound", "outbound")
ORDERS = ("oldest_first", "newest_first")
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}:\d{2})$")


# ---------------------------------------------------------------- JSON ----

def jdump(v, ascii_only=False, compact=True):
    """Serialize v as JSON, writing Decimal numbers with every digit."""
    sep, kv = (",", ":") if compact else (", ", ": ")
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise ValueError("non-finite number")
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("non-finite number")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=ascii_only)
    if isinstance(v, (list, tuple)):
        return "[" + sep.join(jdump(x, ascii_only, compact) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + sep.join(
            json.dumps(str(k), ensure_ascii=ascii_only) + kv +
            jdump(x, ascii_only, compact) for k, x in v.items()) + "}"
    raise TypeError("cannot serialize %r" % type(v))


def jload(text):
    return json.loads(text, parse_float=Decimal)


# ----------------------------------------------------------- timestamps ----

def parse_ts(s):
    """ISO 8601 'YYYY-MM-DDTHH:MM:SS[.f]Z|+HH:MM' -> microseconds since epoch, or None."""
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
        t -= sign * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def fmt_ts(us, style="z"):
    """Format microseconds since epoch; style z | offset0 | offset (a non-UTC offset)."""
    offset = dt.timedelta(0)
    if style == "offset":
        offset = dt.timedelta(hours=2) if us % 2 else dt.timedelta(hours=-5, minutes=-30)
    t = EPOCH + dt.timedelta(microseconds=us) + offset
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ".%03d" % (t.microsecond // 1000) if t.microsecond % 1000 == 0 \
            else ".%06d" % t.microsecond
    if style == "z":
        return s + "Z"
    total = int(offset.total_seconds()) // 60
    sign = "+" if total >= 0 else "-"
    return "%s%s%02d:%02d" % (s, sign, abs(total) // 60, abs(total) % 60)


# ------------------------------------------------------------ generator ----

TEXTS = [
    "Señora García quiere reprogramar la cita del miércoles",
    "客户希望明天下午预约看房",
    "Très bien 👍 — rappeler à 15h, merci",
    'He said "call me back" and left C:\\Users\\ana\\notes.txt',
    "line one\nline two\ttabbed\r\nline three",
    "Ωμέγα ∑ ≠ ∞ · naïve façade coöperate",
    "emoji party 🎉📞🇪🇸 and a bell \u0007 and unit sep \u001f",
    "plain ascii summary: interested in the premium plan",
    "słowa: zażółć gęślą jaźń; Ελληνικά; русский текст",
    "tab\there, slash / and backslash \\ and quote ' and \" double",
]
NAMES = ["José Núñez", "Zoë Ødegård", "李小龙", "Renée O'Connor", "Ana \"Nana\" Pérez",
         "Björn Ståhl", "محمد علي", "Łukasz Żółw"]
INTENTS = ["new_quote", "billing", "support", "reschedule", "cancel", "complaint",
           "información_general", "renewal"]
TAGS = ["vip", "repeat", "spanish", "after-hours", "callback", "escalated", "spam?", "débito"]
CAMPAIGNS = ["spring-promo", "renewals-Q3", "café-leads", "webinar_2024", "🚀launch"]


def _hex(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


class Generator:
    """Seeded source of realistic call records."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        rng = self.rng
        base = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.timezone.utc) + \
            dt.timedelta(days=rng.randint(0, 300))
        self.base_us = (base - EPOCH) // dt.timedelta(microseconds=1)
        self.contacts = ["%s-%s-%s-%s" % (_hex(rng, 8), _hex(rng, 4), _hex(rng, 4), _hex(rng, 4))
                         for _ in range(40)]
        self.assistants = ["%s-%s-%s" % (_hex(rng, 8), _hex(rng, 4), _hex(rng, 4))
                           for _ in range(5)]

    def new_id(self, taken):
        while True:
            r = self.rng
            cid = "call-%s-%s-%s-%s" % (_hex(r, 8), _hex(r, 4), _hex(r, 4), _hex(r, 4))
            if cid not in taken:
                return cid

    def gap_us(self):
        r = self.rng
        if r.random() < 0.03:
            return 0                                   # same start as the previous call
        sec = r.randint(60, 900)
        if r.random() < 0.05:
            sec += r.randint(2, 12) * 3600               # a quiet night
        us = sec * 1000000
        x = r.random()
        if x < 0.10:
            us += r.randint(1, 999) * 1000               # millisecond precision
        elif x < 0.15:
            us += r.randint(1, 999999)                   # microsecond precision
        return us

    def ts_style(self, ended=False):
        x = self.rng.random()
        if x < 0.05:
            return "offset0"
        if ended and x < 0.08:
            return "offset"
        return "z"

    def duration(self):
        r = self.rng
        x = r.random()
        if x < 0.80:
            return r.randint(5, 1800)
        if x < 0.90:
            return Decimal("%d.%d" % (r.randint(5, 900), r.randint(1, 9)))
        if x < 0.95:
            return Decimal("%d.%s" % (r.randint(5, 900), "".join(
                r.choice("0123456789") for _ in range(18)) + "7"))
        if x < 0.98:
            return Decimal("%d.%02d" % (r.randint(0, 59), r.randint(1, 99)))
        return Decimal("%d.%de2" % (r.randint(1, 9), r.randint(1, 9)))   # e.g. 1.8e2

    def finish(self, rec, start_us):
        """Fill in what a finished call has (in place)."""
        r = self.rng
        status = "completed" if r.random() < 0.82 else "failed"
        rec["call_status"] = status
        d = r.randint(0, 20) if status == "failed" else self.duration()
        if status == "failed" and r.random() < 0.3:
            d = Decimal("%d.5" % r.randint(0, 5))
        rec["duration_seconds"] = d
        end_us = start_us + int(Decimal(d) * 1000000)
        rec["call_ended_at"] = fmt_ts(end_us, self.ts_style(ended=True))
        rec["appointment_booked"] = status == "completed" and r.random() < 0.3
        x = r.random()
        if x < 0.70:
            rec["lead_qualification"] = r.choice(("hot", "warm", "cold"))
        elif x < 0.85:
            rec["lead_qualification"] = None
        else:
            rec.pop("lead_qualification", None)
        if "call_intent" not in rec and r.random() < 0.5:
            rec["call_intent"] = r.choice(INTENTS)

    def record(self, cid, start_us, in_progress):
        r = self.rng
        rec = {
            "id": cid,
            "contact_id": r.choice(self.contacts),
            "assistant_id": r.choice(self.assistants),
            "call_type": "inbound" if r.random() < 0.6 else "outbound",
            "call_status": "in-progress",
            "call_started_at": fmt_ts(start_us, self.ts_style()),
        }
        if r.random() < 0.6:
            rec["call_intent"] = r.choice(INTENTS) if r.random() < 0.9 else None
        if in_progress:
            x = r.random()
            if x < 0.5:
                rec["duration_seconds"] = None
            if r.random() < 0.3:
                rec["call_ended_at"] = None
            y = r.random()
            if y < 0.3:
                rec["appointment_booked"] = None
            elif y < 0.5:
                rec["appointment_booked"] = False
            if r.random() < 0.3:
                rec["lead_qualification"] = None
        else:
            self.finish(rec, start_us)
        self.extras(rec)
        return rec

    def extras(self, rec):
        r = self.rng
        if r.random() < 0.5:
            rec["cost_usd"] = Decimal("0.%04d" % r.randint(1, 9999))
        if r.random() < 0.35:
            rec["recording_url"] = "https://rec.vozagent.ai/%s.mp3?sig=%s&exp=%d" % (
                rec["id"], _hex(r, 16), r.randint(10**9, 2 * 10**9))
        if r.random() < 0.3:
            rec["metadata"] = {
                "campaign": r.choice(CAMPAIGNS),
                "tags": r.sample(TAGS, r.randint(0, 3)),
                "score": Decimal("%.3f" % r.random()),
                "flags": {"vip": r.random() < 0.2, "dnc": False, "notes": None},
                "attempt": r.randint(1, 5),
                "nested": {"level2": {"level3": [1, "two", {"three": Decimal("3.0")}]}},
            }
            if r.random() < 0.2:
                rec["metadata"]["métadonnées \"clé\""] = "valeur\\échappée"
        if r.random() < 0.25:
            rec["transcript_summary"] = r.choice(TEXTS)
        if r.random() < 0.15:
            rec["customer_name"] = r.choice(NAMES)
        if r.random() < 0.2:
            rec["tags"] = r.sample(TAGS, r.randint(1, 4))
        if r.random() < 0.15:
            rec["sentiment"] = Decimal("%.3f" % r.uniform(-1, 1))
        if r.random() < 0.15:
            rec["transferred"] = r.random() < 0.5
        if r.random() < 0.1:
            rec["voicemail_left"] = None
        if r.random() < 0.08:
            rec["segments"] = [
                {"speaker": "agent", "start": 0, "end": Decimal("12.5"), "text": r.choice(TEXTS)},
                {"speaker": "caller", "start": Decimal("12.5"), "end": 40, "text": r.choice(TEXTS)},
            ]
        if r.random() < 0.05:
            rec["sip_sequence"] = 10**19 + r.randint(0, 10**18)      # beyond int64
        if r.random() < 0.05:
            rec["precision_probe"] = Decimal("3.14159265358979323846264338327950288")
        if r.random() < 0.04:
            rec["empty_object"] = {}
            rec["empty_array"] = []
        if r.random() < 0.03:
            rec["tiny"] = Decimal("1e-7")
            rec["huge"] = Decimal("6.02214076E+23")
            rec["negative"] = -42


# ---------------------------------------------------------------- store ----

class Entry:
    __slots__ = ("uid", "key", "obj", "text", "ascii")

    def __init__(self, uid, key, obj, text, ascii_only):
        self.uid, self.key, self.obj, self.text, self.ascii = uid, key, obj, text, ascii_only


class CallStore:
    """All calls, kept sorted oldest first; every method takes the lock."""

    def __init__(self, seed, ncalls):
        self.lock = threading.RLock()
        self.reset(seed, ncalls)

    def reset(self, seed, ncalls):
        with self.lock:
            self.gen = Generator(seed)
            self.entries = []          # sorted by key
            self.keys = []             # parallel to entries, for bisect
            self.by_id = {}
            self.uid = 0
            t = self.gen.base_us
            for i in range(ncalls):
                # Guarantee a few old unfinished calls even in a small data set.
                in_prog = self.gen.rng.random() < 0.10 or (i in (2, ncalls // 4) and ncalls >= 10)
                self._insert(self.gen.record(self.gen.new_id(self.by_id), t, in_prog), t)
                t += self.gen.gap_us()
            return len(self.entries)

    # -- internals (lock held) --

    def _make(self, obj, start_us, text=None):
        self.uid += 1
        ascii_only = self.gen.rng.random() < 0.25
        if text is None:
            text = jdump(obj, ascii_only, compact=not ascii_only)
        rid = obj.get("id") if isinstance(obj, dict) else None
        key = (start_us, rid if isinstance(rid, str) else "", self.uid)
        return Entry(self.uid, key, obj, text, ascii_only)

    def _insert(self, obj, start_us, text=None):
        return self._place(self._make(obj, start_us, text))

    def _place(self, e):
        i = bisect.bisect(self.keys, e.key)
        self.entries.insert(i, e)
        self.keys.insert(i, e.key)
        rid = e.obj.get("id") if isinstance(e.obj, dict) else None
        if isinstance(rid, str):
            self.by_id.setdefault(rid, e)
        return e

    def _remove(self, e):
        i = bisect.bisect_left(self.keys, e.key)
        assert self.entries[i] is e
        del self.entries[i]
        del self.keys[i]
        rid = e.obj.get("id") if isinstance(e.obj, dict) else None
        if self.by_id.get(rid) is e:
            del self.by_id[rid]

    def _refresh(self, e):
        """Re-serialize e after its obj changed, and re-sort it if its start moved."""
        self._remove(e)
        start = parse_ts(e.obj.get("call_started_at"))
        rid = e.obj.get("id")
        e.key = (start if start is not None else e.key[0],
                 rid if isinstance(rid, str) else "", e.uid)
        e.text = jdump(e.obj, e.ascii, compact=not e.ascii)
        return self._place(e)

    def _newest_us(self):
        return self.keys[-1][0] if self.keys else self.gen.base_us

    def _in_progress(self):
        return [e for e in self.entries
                if isinstance(e.obj, dict) and e.obj.get("call_status") == "in-progress"]

    def _find(self, ids):
        out = []
        for i in ids:
            e = self.by_id.get(i)
            if e is None:
                raise KeyError("no call with id %r" % (i,))
            out.append(e)
        return out

    # -- public --

    def page(self, order, offset, limit, filters):
        """Texts of one page of the (filtered) list in API order."""
        with self.lock:
            seq = self.entries if order == "oldest_first" else reversed(self.entries)
            if filters:
                seq = [e for e in seq if isinstance(e.obj, dict) and
                       all(e.obj.get(k) == v for k, v in filters.items())]
            else:
                seq = list(seq)
            return [e.text for e in seq[offset:offset + limit]]

    def all_texts(self, order):
        return self.page(order, 0, len(self.entries) + 1, None)

    def add_new(self, count, in_progress=0.3):
        with self.lock:
            out, t = [], self._newest_us()
            for _ in range(count):
                t += max(self.gen.gap_us(), 1000000)
                obj = self.gen.record(self.gen.new_id(self.by_id), t,
                                      self.gen.rng.random() < in_progress)
                out.append(self._insert(obj, t).obj)
            return out

    def add_late(self, count, within_seconds, in_progress=0.3):
        with self.lock:
            out, newest = [], self._newest_us()
            for _ in range(count):
                t = newest - self.gen.rng.randint(1, max(1, int(within_seconds))) * 1000000
                obj = self.gen.record(self.gen.new_id(self.by_id), t,
                                      self.gen.rng.random() < in_progress)
                out.append(self._insert(obj, t).obj)
            return out

    def add_records(self, objs):
        with self.lock:
            out = []
            for obj in objs:
                start = parse_ts(obj.get("call_started_at")) if isinstance(obj, dict) else None
                # An unparseable start sorts as the newest call: the API orders by its own clock.
                out.append(self._insert(obj, start if start is not None
                                        else self._newest_us() + 1).obj)
            return out

    def add_raw(self, texts):
        with self.lock:
            out = []
            for text in texts:
                try:
                    obj = jload(text)
                except ValueError:
                    obj = None
                start = parse_ts(obj.get("call_started_at")) if isinstance(obj, dict) else None
                self._insert(obj if isinstance(obj, dict) else {},
                             start if start is not None else self._newest_us() + 1, text)
                out.append(obj)
            return out

    def finish(self, ids=None, count=None, pick="random"):
        with self.lock:
            if ids is not None:
                targets = self._find(ids)
                bad = [e.obj["id"] for e in targets if e.obj.get("call_status") != "in-progress"]
                if bad:
                    raise KeyError("not in progress: %s" % ", ".join(bad))
            else:
                pool = self._in_progress()
                if pick == "oldest":
                    targets = pool[:count]
                elif pick == "newest":
                    targets = pool[::-1][:count]
                else:
                    targets = self.gen.rng.sample(pool, min(count, len(pool)))
            out = []
            for e in targets:
                self.gen.finish(e.obj, e.key[0])
                out.append(self._refresh(e).obj)
            return out

    def update(self, ids, set_fields, unset):
        with self.lock:
            out = []
            for e in self._find(ids):
                e.obj.update(set_fields)
                for k in unset:
                    e.obj.pop(k, None)
                out.append(self._refresh(e).obj)
            return out

    def delete(self, ids=None, count=None):
        with self.lock:
            if ids is not None:
                targets = self._find(ids)
            else:
                targets = self.gen.rng.sample(self.entries, min(count, len(self.entries)))
            for e in targets:
                self._remove(e)
            return [e.obj for e in targets]

    def state(self):
        with self.lock:
            return {"count": len(self.entries), "in_progress": len(self._in_progress()),
                    "newest_started_at": fmt_ts(self._newest_us()) if self.entries else None}


# --------------------------------------------------------------- server ----

class Sim:
    """Shared state of one simulator: data, config, request log."""

    def __init__(self, args):
        self.store = CallStore(args.seed, args.calls)
        self.cfg_lock = threading.Lock()
        self.config = {"order": args.order, "delay_ms": 0, "chunk_delay_ms": 0,
                       "write_size": 4096, "transfer": "length", "token": args.token}
        self.log_lock = threading.Lock()
        self.requests = []
        self.seq = 0
        self.quiet = args.quiet

    def cfg(self):
        with self.cfg_lock:
            return dict(self.config)

    def set_config(self, body):
        checks = {
            "order": lambda v: v in ORDERS,
            "delay_ms": lambda v: _is_int(v) and 0 <= v <= 600000,
            "chunk_delay_ms": lambda v: _is_int(v) and 0 <= v <= 600000,
            "write_size": lambda v: _is_int(v) and 1 <= v <= 1 << 24,
            "transfer": lambda v: v in ("length", "chunked"),
            "token": lambda v: isinstance(v, str) and v != "",
        }
        for k, v in body.items():
            if k not in checks:
                raise ValueError("unknown config key %r" % k)
            if not checks[k](v):
                raise ValueError("bad value for %s: %r" % (k, v))
        with self.cfg_lock:
            self.config.update(body)
            return dict(self.config)

    def log_request(self, entry):
        with self.log_lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.requests.append(entry)

    def fault_for(self, entry):
        """The fault to inject into this /v1/calls request, or None.

        Issue 4 plugs a fault queue and a random fault rate in here."""
        return None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vozagent-sim/1"
    timeout = 300          # idle keep-alive connections end eventually

    def setup(self):
        super().setup()
        # Many small writes: do not let Nagle + delayed ACK stall each page by 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def sim(self):
        return self.server.sim

    def log_message(self, fmt, *args):
        if not self.sim.quiet:
            sys.stderr.write("sim: %s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing --

    def _send(self, code, body, ctype="application/json", headers=()):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code, obj):
        self._send(code, jdump(obj) + "\n")

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        if not raw.strip():
            return {}
        try:
            body = jload(raw.decode("utf-8"))
        except ValueError as e:
            raise BadRequest("body is not JSON: %s" % e)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        return body

    def _stream(self, pieces, cfg):
        """Send a 200 JSON body in several writes, as Content-Length or chunked."""
        data = "".join(pieces).encode("utf-8")
        size = cfg["write_size"]
        delay = cfg["chunk_delay_ms"] / 1000.0
        chunked = cfg["transfer"] == "chunked"
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # At least 3 writes so a client always sees the body in pieces, even a short one.
        size = max(1, min(size, (len(data) + 2) // 3))
        for i in range(0, len(data), size):
            if i and delay:
                time.sleep(delay)
            part = data[i:i + size]
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            else:
                self.wfile.write(part)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- verbs --

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        try:
            if url.path.startswith("/_control/"):
                self._control(method, url.path[len("/_control/"):])
            elif url.path.startswith("/v1/"):
                self._serve_calls(method, url)
            else:
                self._json(404, {"error": "not found"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- the API --

    def _serve_calls(self, method, url):
        t0 = time.time()
        cfg = self.sim.cfg()
        entry = {"time": t0, "method": method, "path": url.path, "params": {},
                 "limit": None, "offset": None, "status": None, "returned": None,
                 "auth": None, "client": "%s:%d" % self.client_address[:2], "fault": None,
                 "elapsed_ms": None}
        try:
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        except ValueError:
            pairs = []
        for k, v in pairs:
            entry["params"][k] = v
        code, body, headers, page = self._answer(method, url, pairs, cfg, entry)
        if cfg["delay_ms"]:
            time.sleep(cfg["delay_ms"] / 1000.0)
        if page is not None:
            # Snapshot taken after the delay: what the list holds when the answer leaves.
            texts = self.sim.store.page(cfg["order"], entry["offset"], entry["limit"], page)
            entry["status"], entry["returned"] = 200, len(texts)
            entry["elapsed_ms"] = round((time.time() - t0) * 1000, 1)
            self.sim.log_request(entry)
            self._stream(["[\n"] + [("" if i == 0 else ",\n") + t for i, t in enumerate(texts)]
                         + ["\n]\n"], cfg)
        else:
            entry["status"] = code
            entry["elapsed_ms"] = round((time.time() - t0) * 1000, 1)
            self.sim.log_request(entry)
            self._send(code, jdump(body) + "\n", headers=headers)

    def _answer(self, method, url, pairs, cfg, entry):
        """Decide the answer: (code, error body, headers, filters-or-None for a page)."""
        if url.path.rstrip("/") != "/v1/calls":
            return 404, {"error": "not found"}, (), None
        if method != "GET":
            return 405, {"error": "method not allowed"}, (("Allow", "GET"),), None
        auth = self.headers.get("Authorization")
        if auth is None:
            entry["auth"] = "missing"
        elif auth == "Bearer " + cfg["token"]:
            entry["auth"] = "ok"
        else:
            entry["auth"] = "wrong"
        if entry["auth"] != "ok":
            return 401, {"error": "unauthorized", "message": "invalid or missing API key"}, \
                (("WWW-Authenticate", 'Bearer realm="vozagent"'),), None
        fault = self.sim.fault_for(entry)
        if fault is not None:       # issue 4
            entry["fault"] = fault
        try:
            limit, offset, filters = self._validate(pairs)
        except BadRequest as e:
            return 400, {"error": str(e)}, (), None
        entry["limit"], entry["offset"] = limit, offset
        return 200, None, (), filters

    @staticmethod
    def _validate(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise BadRequest("parameter %s given more than once" % k)
            seen[k] = v
        limit, offset = DEFAULT_LIMIT, 0
        if "limit" in seen:
            if not re.fullmatch(r"[0-9]+", seen["limit"]) or int(seen["limit"]) > MAX_LIMIT:
                raise BadRequest("limit must be an integer between 0 and %d" % MAX_LIMIT)
            limit = int(seen["limit"])
        if "offset" in seen:
            if not re.fullmatch(r"[0-9]+", seen["offset"]):
                raise BadRequest("offset must be a non-negative integer")
            offset = int(seen["offset"])
        filters = {}
        for k, allowed in (("status", STATUSES), ("call_type", CALL_TYPES),
                           ("contact_id", None), ("assistant_id", None)):
            if k in seen:
                if allowed is not None and seen[k] not in allowed:
                    raise BadRequest("%s must be one of %s" % (k, ", ".join(allowed)))
                filters["call_status" if k == "status" else k] = seen[k]
        return limit, offset, filters

    # -- the control interface --

    def _control(self, method, what):
        sim, store = self.sim, self.sim.store
        try:
            if method == "GET" and what == "calls":
                texts = store.all_texts(sim.cfg()["order"])
                self._send(200, "[\n" + ",\n".join(texts) + "\n]\n")
                return
            if method == "GET" and what == "state":
                st = store.state()
                st.update(order=sim.cfg()["order"], config=_public_cfg(sim.cfg()),
                          requests=len(sim.requests))
                return self._json(200, st)
            if method == "GET" and what == "config":
                return self._json(200, {"config": _public_cfg(sim.cfg())})
            if method == "GET" and what == "requests":
                with sim.log_lock:
                    reqs = list(sim.requests)
                return self._json(200, {"requests": reqs})
            if method != "POST":
                return self._json(404, {"error": "no such control endpoint: %s %s"
                                        % (method, what)})
            body = self._read_body()
            if what == "requests/clear":
                with sim.log_lock:
                    n = len(sim.requests)
                    sim.requests = []
                return self._json(200, {"cleared": n})
            if what == "config":
                return self._json(200, {"config": _public_cfg(sim.set_config(body))})
            if what == "add":
                return self._json(200, {"added": self._add(body)})
            if what == "finish":
                if "ids" in body:
                    out = store.finish(ids=_str_list(body, "ids"))
                else:
                    out = store.finish(count=_count(body, "count"),
                                       pick=body.get("pick", "random"))
                return self._json(200, {"changed": out})
            if what == "update":
                s, u = body.get("set", {}), body.get("unset", [])
                if not isinstance(s, dict) or not isinstance(u, list):
                    raise BadRequest("set must be an object and unset a list")
                return self._json(200, {"changed": store.update(_str_list(body, "ids"), s, u)})
            if what == "delete":
                if "ids" in body:
                    out = store.delete(ids=_str_list(body, "ids"))
                else:
                    out = store.delete(count=_count(body, "count"))
                return self._json(200, {"deleted": out})
            if what == "reset":
                n = store.reset(body.get("seed", 1), _count(body, "calls"))
                return self._json(200, {"count": n})
            return self._json(404, {"error": "no such control endpoint: %s %s" % (method, what)})
        except (BadRequest, KeyError, ValueError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return self._json(400, {"error": msg})

    def _add(self, body):
        store = self.sim.store
        inp = body.get("in_progress", 0.3)
        if "records" in body:
            recs = body["records"]
            if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
                raise BadRequest("records must be a list of objects")
            return store.add_records(recs)
        if "raw_records" in body:
            return store.add_raw(_str_list(body, "raw_records"))
        if "late" in body:
            return store.add_late(_count(body, "late"), _count(body, "within_seconds"), inp)
        if "count" in body:
            return store.add_new(_count(body, "count"), inp)
        raise BadRequest("add needs count, late, records or raw_records")


def _public_cfg(cfg):
    cfg = dict(cfg)
    cfg.pop("token", None)
    return cfg


def _count(body, key):
    v = body.get(key)
    if not _is_int(v) or v < 0:
        raise BadRequest("%s must be a non-negative integer" % key)
    return v


def _str_list(body, key):
    v = body.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadRequest("%s must be a list of strings" % key)
    return v


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    p.add_argument("--token", default="sim-token", help="the valid Bearer key")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--calls", type=int, default=200, help="calls generated at start")
    p.add_argument("--order", choices=ORDERS, default="oldest_first")
    p.add_argument("--quiet", action="store_true", help="no request log on stderr")
    args = p.parse_args(argv)

    sim = Sim(args)
    srv = Server((args.host, args.port), Handler)
    srv.sim = sim
    port = srv.server_address[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    if not args.quiet:
        sys.stderr.write("vozagent-sim: listening on http://%s:%d/v1 (%d calls, %s)\n"
                         % (args.host, port, args.calls, args.order))

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
