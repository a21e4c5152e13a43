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
                                   "generation", "config", "requests", "max_in_flight"
                                   (most /v1/ requests answered at once since the last
                                   requests/clear), "mutator", "faults", "connections"}
                                  connections: TCP connections accepted so far (control
                                  ones included; a request's "conn" tells API ones apart)
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
                                  "transfer": "length|chunked", "token": "...",
                                  "repeat_last_page": true|false,
                                  "wrap_around": true|false,
                                  "gzip": true|false (default false)}
                                  -> {"config": {...}}
                                  gzip: 200 pages go gzip-compressed (Content-Encoding) to a
                                  request whose Accept-Encoding lists gzip
                                  repeat_last_page: a misbehaving API (or a cache in front
                                  of it): a page that would be short - any offset near or
                                  past the end - answers with the last full page of the list
                                  instead, so no page is ever short (lists shorter than the
                                  limit are served whole)
                                  wrap_around: a misbehaving API (or cache) that answers
                                  offsets past the end from the start again: the call at
                                  offset o is the one at o % N, and every page is full (lists
                                  shorter than the limit are served whole)
  GET  /_control/requests         -> {"requests": [{"seq", "time", "method", "path",
                                  "params", "limit", "offset", "status", "returned",
                                  "auth", "client", "fault", "fault_source", "fault_spec",
                                  "fault_outcome", "elapsed_ms", "conn", "encoding"}, ...]}
                                  conn: which TCP connection (1, 2, ... in accept order)
                                  carried it; encoding: "gzip" when the page went compressed
                                  (every request to /v1/..., oldest first; status null when
                                  a fault sent no answer; fault = the fault kind or null)
  POST /_control/requests/clear   -> {"cleared": N}
  POST /_control/reset            {"seed": N, "calls": N [, "in_progress_recent": N,
                                  "in_progress_stuck": M, "in_progress_fraction": F]}
                                  regenerate -> {"count": N}. The in_progress_* keys are
                                  those of the command line; absent: the command line's
                                  values; null: the default distribution. Leaves config,
                                  mutator and faults alone.

In-progress distribution (--in-progress-recent N --in-progress-stuck M
[--in-progress-fraction F], or the reset keys)
  Default: every generated call is in progress with probability 0.10 whatever its age (plus
  two old ones guaranteed). With N and/or M: only the N newest calls may be in progress, each
  with probability F (default 0.3), plus M older calls stuck in progress, started at least 2
  days before the newest (or the oldest ones if the history is shorter). E.g. --calls 20000
  --in-progress-recent 100 --in-progress-stuck 5 lists ~35 calls for status=in-progress.

Live mutation while a pass pages (issue 3)
  POST /_control/mutator  {"seed": N, "every": K, "per": M,
                           "kinds": {"new": w1, "late": w2, "finish": w3, "delete": w4,
                                     "update_old": w5},
                           "late_within_seconds": S, "max": TOTAL, ...}
                          or {"seed", "interval_ms": T, "per", "kinds", ...} (timed)
                          or {"off": true}                 -> the report below
    every K     per-request mode: every request to /v1/calls counts (whatever its answer:
                pages, 400/401, injected faults); right after the K-th, 2K-th, ... request's
                answer is decided - for a page, atomically with taking its snapshot - M
                mutations are applied. That page never shows them; every request decided
                later does. So they land between pages. Control calls do not count.
    interval_ms timed mode instead: a background thread applies M mutations every T ms.
    per         mutations per turn (default 1); max: stop after TOTAL (default: never).
    kinds       weights (default new, late, finish, delete 1 each; update_old 0). A kind with
                nothing to act on (no call in progress, no old finished call) is not drawn.
                new      a call after the newest one (in progress with probability
                         "in_progress", default 0.3)
                late     a call started up to late_within_seconds (default 3600) before the
                         newest: it lands inside the list, behind newer calls
                finish   a random in-progress call completes or fails (end, duration,
                         booking, qualification filled in)
                delete   a random call anywhere in the list (ahead of or behind the pass);
                         with "delete_window": W (default 0 = anywhere), a share
                         "delete_near" (default 1.0) of deletions instead hit within W
                         positions of the triggering request's page, in the list it paged
                update_old  one field of a finished call started more than
                         old_before_seconds (default 86400) before the newest is edited:
                         only a full reconciliation sees it
    Deterministic: the mutator has its own random stream (from seed), so the same seed and
    the same requests give the same mutations, in either order. (Re)configuring starts afresh
    (counts, log); {"off": true} stops it and keeps its log.
  GET  /_control/mutator  {"active", "config", "requests_counted", "total", "skipped",
                           "counts": {"new": n, "late": n, "finish": n, "delete": n,
                                      "update_old": n},
                           "mutations": [{"n", "kind", "id", "seq", "time", "pos", "rel",
                                          "started_at" [, "status" | "field"]}, ...]}
    seq: the request after which it was applied (timed: the last request logged); pos: the
    call's position in the whole list, API order (a deleted call: where it was); rel: where
    it is relative to the triggering request's page, in the list that request paged
    ("behind" = before its offset, "in_page", "ahead"; null in timed mode, for a request
    that was not a valid page request, or a call no longer in that filtered list).

Fault injection (issue 4)
  POST /_control/faults   {"queue": [fault, ...] [, "append": true]}
                          {"rate": 0.15, "seed": N [, "kinds": [fault, ...]]}
                          {"clear": true}                  (may be combined) -> report
    A fault is a kind ("503") or an object {"kind": "429", "retry_after": "2"}. The queue
    (replaced unless "append") gives the next requests their faults, one each, in order;
    when it is empty a request gets a fault with probability rate, drawn from kinds
    (uniformly; repeat a kind to weight it; default: 429, 500, 502, 503, 504, reset, cut, html, json_error, invalid_json, not_objects) from a stream seeded with seed.
    Only a /v1/calls request that would otherwise get a 200 page consumes a fault (the
    simulator's own 400/401 do not); a fault takes the whole request, the next one is served
    normally unless the queue or rate says otherwise. clear: no queue, no rate, empty
    report. Kinds and their parameters (defaults):
      400 401 403 500 503      JSON {"error", "message"} body ("message" to override;
                               503 takes "retry_after" too, default none)
      (every status kind)      "body_hex": the body as hex, sent as it is (text/plain):
                               bytes that are not UTF-8, for instance
      oversize                 200: "factor" (3) times limit records from offset (as many
                               as the list holds), as an API that ignores limit would
      429                      JSON body, Retry-After: retry_after ("1"; seconds or an
                               HTTP-date string; null = no header)
      502 504                  an HTML proxy error page
      echo_headers             "status" (502, or 400) from a debugging proxy whose page
                               echoes the request line and headers (Authorization
                               included), after "pad" (0) bytes of filler
      reset                    no answer: the connection is closed with a TCP RST
                               (SO_LINGER 0)
      hang                     no answer: the connection is held until the client closes
                               it or "seconds" (120) pass, then closed; other requests go on
      slow                     the real page, full Content-Length, trickled at
                               "bytes_per_second" (256): no single read stalls long
      cut                      headers for the whole page (Content-Length, or chunked per
                               "transfer"), then "fraction" (0.5) of the body, then close
                               (FIN, or RST with "rst": true)
      html                     200 text/html error page
      json_error               200 {"error": "internal"}
      invalid_json             200: the page's records (limit - 1 at most), then a broken
                               record and no "]"
      not_objects              200 [1, 2, 3]
      huge                     200: a valid array bigger than "bytes" (64 MiB): the page
                               (limit - 1 records at most) plus a record with a huge
                               "padding" string, generated as sent
      gzip_bomb                200 gzip-encoded (whatever the request accepts): the page
                               (limit - 1 records at most), then whitespace up to "bytes"
                               (64 MiB) once inflated, then "]": a valid page of a few
                               KiB on the wire that only a cap on inflated bytes refuses
      bad_records              200: the page plus a record without id (first), one with a
                               numeric id (middle) and a copy of the page's first record
                               (last): 3 more records than the page (on a full page
                               that is more than limit: the daemon refuses the page);
                               "tag" (null): a string put in the first two as "tag", to
                               vary their content
      nul                      200: the page plus 3 hostile, valid records (ids
                               call-00000000-0000-0000-0a0N): NUL in keys and values, a
                               "string_bytes" (1 MiB) string, "depth" (200) levels of
                               nesting; "nul_in_id": true adds a 4th with a NUL in its id.
                               They exist only in that answer (on a full page, more than
                               limit: the daemon refuses the page).
  GET  /_control/faults   {"queue": [pending specs], "rate": {...} | null,
                           "injected": [{"seq", "kind", "source": "queue|rate", "spec",
                                         "status", "outcome"}, ...],
                           "counts": {kind: n}}
    outcome says what happened on the wire (e.g. "client closed after 0.50 s",
    "cut after 768 of 1536 body bytes (Content-Length, FIN)").

Data is deterministic for a seed (and a given sequence of control calls and requests).
Every data change goes through CallStore under one lock; /v1/calls answers go through
Handler._serve_calls.
"""

import argparse
import bisect
import copy
import datetime as dt
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUSES = ("completed", "in-progress", "failed")
CALL_TYPES = ("inbound", "outbound")
ORDERS = ("oldest_first", "newest_first")
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_RECENT_FRACTION = 0.3          # --in-progress-fraction
STUCK_MIN_AGE_US = 2 * 86400 * 10**6   # stuck calls started >= 2 days before the newest

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

    def __init__(self, seed, ncalls, dist=None):
        self.lock = threading.RLock()
        self.reset(seed, ncalls, dist)

    def reset(self, seed, ncalls, dist=None):
        """Regenerate ncalls calls for seed.

        dist None (default): every call is in progress with probability 0.10, whatever its age
        (plus two guaranteed old ones). dist {"recent": N, "stuck": M, "fraction": F}: only the
        N newest calls may be in progress (each with probability F), plus M calls older than
        them, started at least STUCK_MIN_AGE before the newest, stuck in progress."""
        with self.lock:
            self.gen = Generator(seed)
            self.entries = []          # sorted by key
            self.keys = []             # parallel to entries, for bisect
            self.by_id = {}
            self.uid = 0
            self.generation = {"seed": seed, "calls": ncalls,
                               "in_progress_recent": dist and dist.get("recent"),
                               "in_progress_stuck": dist and dist.get("stuck"),
                               "in_progress_fraction": dist and dist.get("fraction")}
            t = self.gen.base_us
            if dist is None:
                for i in range(ncalls):
                    # Guarantee a few old unfinished calls even in a small data set.
                    in_prog = self.gen.rng.random() < 0.10 or (i in (2, ncalls // 4) and
                                                               ncalls >= 10)
                    self._insert(self.gen.record(self.gen.new_id(self.by_id), t, in_prog), t)
                    t += self.gen.gap_us()
                return len(self.entries)
            rng = self.gen.rng
            recent, stuck = dist.get("recent") or 0, dist.get("stuck") or 0
            frac = dist.get("fraction")
            frac = DEFAULT_RECENT_FRACTION if frac is None else frac
            times = []
            for _ in range(ncalls):
                times.append(t)
                t += self.gen.gap_us()
            first_recent = max(0, ncalls - recent)
            newest = times[-1] if times else t
            pool = [i for i in range(first_recent) if newest - times[i] >= STUCK_MIN_AGE_US]
            if len(pool) < stuck:          # a short history: take the oldest calls instead
                pool = list(range(first_recent))
            stuck_idx = set(rng.sample(pool, min(stuck, len(pool))))
            for i, t in enumerate(times):
                in_prog = i in stuck_idx or (i >= first_recent and rng.random() < frac)
                self._insert(self.gen.record(self.gen.new_id(self.by_id), t, in_prog), t)
            return len(self.entries)

    # -- internals (lock held) --

    def _make(self, obj, start_us, text=None, gen=None):
        self.uid += 1
        ascii_only = (gen or self.gen).rng.random() < 0.25
        if text is None:
            text = jdump(obj, ascii_only, compact=not ascii_only)
        rid = obj.get("id") if isinstance(obj, dict) else None
        key = (start_us, rid if isinstance(rid, str) else "", self.uid)
        return Entry(self.uid, key, obj, text, ascii_only)

    def _insert(self, obj, start_us, text=None, gen=None):
        return self._place(self._make(obj, start_us, text, gen))

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

    def page(self, order, offset, limit, filters, repeat_last=False, wrap=False):
        """Texts of one page of the (filtered) list in API order; repeat_last: a page that
        would be short is the last full page instead; wrap: offsets past the end count
        from the start again, so every page is full."""
        with self.lock:
            seq = self.entries if order == "oldest_first" else reversed(self.entries)
            if filters:
                seq = [e for e in seq if isinstance(e.obj, dict) and
                       all(e.obj.get(k) == v for k, v in filters.items())]
            else:
                seq = list(seq)
            if repeat_last and offset + limit > len(seq):
                offset = max(0, len(seq) - limit)
            if wrap and limit <= len(seq):
                return [seq[(offset + i) % len(seq)].text for i in range(limit)]
            return [e.text for e in seq[offset:offset + limit]]

    def all_texts(self, order):
        return self.page(order, 0, len(self.entries) + 1, None)

    def add_new(self, count, in_progress=0.3, gen=None):
        gen = gen or self.gen
        with self.lock:
            out, t = [], self._newest_us()
            for _ in range(count):
                t += max(gen.gap_us(), 1000000)
                obj = gen.record(gen.new_id(self.by_id), t, gen.rng.random() < in_progress)
                out.append(self._insert(obj, t, gen=gen).obj)
            return out

    def add_late(self, count, within_seconds, in_progress=0.3, gen=None):
        gen = gen or self.gen
        with self.lock:
            out, newest = [], self._newest_us()
            for _ in range(count):
                t = newest - gen.rng.randint(1, max(1, int(within_seconds))) * 1000000
                obj = gen.record(gen.new_id(self.by_id), t, gen.rng.random() < in_progress)
                out.append(self._insert(obj, t, gen=gen).obj)
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
                    "newest_started_at": fmt_ts(self._newest_us()) if self.entries else None,
                    "generation": dict(self.generation)}

    def api_pos(self, e, order):
        """Position of entry e in the whole list, API order (lock held)."""
        i = bisect.bisect_left(self.keys, e.key)
        return i if order == "oldest_first" else len(self.entries) - 1 - i

    def api_list(self, order, filters=None):
        """Entries in API order, filtered like /v1/calls (lock held)."""
        seq = self.entries if order == "oldest_first" else self.entries[::-1]
        if filters:
            seq = [e for e in seq if isinstance(e.obj, dict) and
                   all(e.obj.get(k) == v for k, v in filters.items())]
        return seq


# -------------------------------------------------------------- mutator ----

MUTATION_KINDS = ("new", "late", "finish", "delete", "update_old")


def _num(v):
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


class Mutator:
    """Seeded live changes to the data while a client pages (issue 3).

    Per-request mode ("every": K): every request to /v1/calls is counted (whatever its answer,
    errors and faults included); right after the K-th, 2K-th, ... request's answer is decided
    (for a page: atomically with taking its snapshot, under the store lock) "per" mutations are
    applied. So that page does not show them, and every request decided later does: they happen
    between pages. Timed mode ("interval_ms": T): a background thread applies "per" mutations
    every T ms instead. All its state is guarded by the store lock."""

    def __init__(self, sim):
        self.sim = sim
        self.cfg = None            # None: never configured
        self.active = False
        self.rng = None
        self.nreq = 0
        self.applied = []
        self.counts = dict.fromkeys(MUTATION_KINDS, 0)
        self.skipped = 0
        self.token = 0             # bumps on every (re)configuration: stops an old thread

    @property
    def store(self):
        return self.sim.store

    def configure(self, body):
        if body.get("off") is True:
            if set(body) - {"off"}:
                raise BadRequest("off takes no other keys")
            with self.store.lock:
                self.active = False
                self.token += 1
                return self.report()
        allowed = {"seed", "every", "interval_ms", "per", "kinds", "late_within_seconds",
                   "max", "in_progress", "old_before_seconds", "delete_window", "delete_near"}
        unknown = set(body) - allowed
        if unknown:
            raise BadRequest("unknown mutator keys: %s" % ", ".join(sorted(unknown)))
        cfg = {"seed": body.get("seed", 1), "every": body.get("every"),
               "interval_ms": body.get("interval_ms"), "per": body.get("per", 1),
               "kinds": body.get("kinds", {"new": 1, "late": 1, "finish": 1, "delete": 1}),
               "late_within_seconds": body.get("late_within_seconds", 3600),
               "max": body.get("max"), "in_progress": body.get("in_progress", 0.3),
               "old_before_seconds": body.get("old_before_seconds", 86400),
               "delete_window": body.get("delete_window", 0),
               "delete_near": body.get("delete_near", 1.0)}
        if not _is_int(cfg["seed"]):
            raise BadRequest("seed must be an integer")
        if (cfg["every"] is None) == (cfg["interval_ms"] is None):
            raise BadRequest("give exactly one of every (per request) or interval_ms (timed)")
        if cfg["every"] is not None and not (_is_int(cfg["every"]) and cfg["every"] >= 1):
            raise BadRequest("every must be an integer >= 1")
        if cfg["interval_ms"] is not None and not (_is_int(cfg["interval_ms"]) and
                                                   1 <= cfg["interval_ms"] <= 3600000):
            raise BadRequest("interval_ms must be an integer 1-3600000")
        if not (_is_int(cfg["per"]) and cfg["per"] >= 1):
            raise BadRequest("per must be an integer >= 1")
        if cfg["max"] is not None and not (_is_int(cfg["max"]) and cfg["max"] >= 0):
            raise BadRequest("max must be a non-negative integer or null")
        k = cfg["kinds"]
        if not isinstance(k, dict) or not k or set(k) - set(MUTATION_KINDS) or \
                not all(_num(w) and w >= 0 for w in k.values()) or not any(k.values()):
            raise BadRequest("kinds must map some of %s to non-negative weights, not all 0"
                             % ", ".join(MUTATION_KINDS))
        cfg["kinds"] = {n: float(w) for n, w in k.items()}
        for key in ("late_within_seconds", "old_before_seconds", "delete_window"):
            if not (_is_int(cfg[key]) and cfg[key] >= 0):
                raise BadRequest("%s must be a non-negative integer" % key)
        for key in ("in_progress", "delete_near"):
            if not (_num(cfg[key]) and 0 <= cfg[key] <= 1):
                raise BadRequest("%s must be a number between 0 and 1" % key)
            cfg[key] = float(cfg[key])
        with self.store.lock:
            self.token += 1
            self.cfg = cfg
            self.active = cfg["max"] != 0
            self.rng = random.Random("vozagent-sim mutator %d" % cfg["seed"])
            self.nreq = 0
            self.applied = []
            self.counts = dict.fromkeys(MUTATION_KINDS, 0)
            self.skipped = 0
            if cfg["interval_ms"] is not None and self.active:
                threading.Thread(target=self._run, args=(self.token, cfg["interval_ms"] / 1000.0),
                                 daemon=True, name="mutator").start()
            return self.report()

    def report(self):
        with self.store.lock:
            return {"active": self.active, "config": self.cfg, "requests_counted": self.nreq,
                    "total": len(self.applied), "counts": dict(self.counts),
                    "skipped": self.skipped, "mutations": list(self.applied)}

    def summary(self):
        with self.store.lock:
            return {"active": self.active, "total": len(self.applied)}

    # -- triggers --

    def on_request(self, ctx):
        """A /v1/calls request was decided (store lock held). ctx: seq, order and, for a
        page, offset, limit and filters."""
        if not self.active or self.cfg["every"] is None:
            return
        self.nreq += 1
        if self.nreq % self.cfg["every"] == 0:
            self._apply(ctx)

    def _run(self, token, interval):
        while True:
            time.sleep(interval)
            with self.store.lock:
                if token != self.token or not self.active:
                    return
                with self.sim.log_lock:
                    seq = self.sim.seq
                self._apply({"seq": seq, "order": self.sim.cfg()["order"], "offset": None})

    # -- the mutations (store lock held) --

    def _apply(self, ctx):
        for _ in range(self.cfg["per"]):
            if self.cfg["max"] is not None and len(self.applied) >= self.cfg["max"]:
                self.active = False
                return
            self._one(ctx)
        if self.cfg["max"] is not None and len(self.applied) >= self.cfg["max"]:
            self.active = False

    def _gen(self):
        g = copy.copy(self.store.gen)     # the data set's pools, the mutator's own randomness
        g.rng = self.rng
        return g

    def _one(self, ctx):
        store, rng, cfg = self.store, self.rng, self.cfg
        newest = store._newest_us()
        inprog = store._in_progress()
        cutoff = newest - cfg["old_before_seconds"] * 1000000
        ncut = bisect.bisect_left(store.keys, (cutoff,))      # calls started before the cutoff
        old = None
        if cfg["kinds"].get("update_old"):
            old = self._pick_old(ncut)
        usable = {"new": True, "late": True, "finish": bool(inprog),
                  "delete": bool(store.entries), "update_old": old is not None}
        kinds = [(k, w) for k, w in sorted(cfg["kinds"].items()) if w > 0 and usable[k]]
        if not kinds:
            self.skipped += 1
            return
        x = rng.random() * sum(w for _, w in kinds)
        kind = kinds[-1][0]
        for k, w in kinds:
            if x < w:
                kind = k
                break
            x -= w
        gen = self._gen()
        rec = {"n": len(self.applied) + 1, "kind": kind, "id": None, "seq": ctx.get("seq"),
               "time": round(time.time(), 3), "pos": None, "rel": None}
        order = ctx["order"]
        if kind == "new":
            e = store.by_id[store.add_new(1, cfg["in_progress"], gen=gen)[0]["id"]]
        elif kind == "late":
            e = store.by_id[store.add_late(1, max(1, cfg["late_within_seconds"]),
                                           cfg["in_progress"], gen=gen)[0]["id"]]
        elif kind == "finish":
            e = rng.choice(inprog)
            gen.finish(e.obj, e.key[0])
            store._refresh(e)
            rec["status"] = e.obj.get("call_status")
        elif kind == "update_old":
            e = old
            rec["field"] = self._edit(e.obj, rng)
            store._refresh(e)
        else:   # delete
            e = self._pick_delete(ctx)
            rec["pos"], rec["rel"] = store.api_pos(e, order), self._rel(e, ctx)
            store._remove(e)
        if kind != "delete":
            rec["pos"], rec["rel"] = store.api_pos(e, order), self._rel(e, ctx)
        rid = e.obj.get("id") if isinstance(e.obj, dict) else None
        rec["id"] = rid if isinstance(rid, str) else None
        rec["started_at"] = e.obj.get("call_started_at") if isinstance(e.obj, dict) else None
        self.applied.append(rec)
        self.counts[kind] += 1

    def _pick_old(self, ncut):
        entries = self.store.entries
        if ncut <= 0:
            return None
        for _ in range(64):
            e = entries[self.rng.randrange(ncut)]
            if isinstance(e.obj, dict) and e.obj.get("call_status") in ("completed", "failed"):
                return e
        cands = [e for e in entries[:ncut] if isinstance(e.obj, dict) and
                 e.obj.get("call_status") in ("completed", "failed")]
        return self.rng.choice(cands) if cands else None

    @staticmethod
    def _edit(obj, rng):
        field = rng.choice(("lead_qualification", "appointment_booked", "call_intent",
                            "transcript_summary", "disposition_note"))
        if field == "lead_qualification":
            obj[field] = rng.choice([v for v in ("hot", "warm", "cold")
                                     if v != obj.get(field)])
        elif field == "appointment_booked":
            obj[field] = not obj.get(field)
        elif field == "call_intent":
            obj[field] = rng.choice([v for v in INTENTS if v != obj.get(field)])
        elif field == "transcript_summary":
            obj[field] = rng.choice([v for v in TEXTS if v != obj.get(field)]) + \
                " (edited %d)" % rng.randint(1, 10**6)
        else:
            obj[field] = "edited by QA #%d" % rng.randint(1, 10**6)
        return field

    def _pick_delete(self, ctx):
        store, rng, cfg = self.store, self.rng, self.cfg
        if cfg["delete_window"] and ctx.get("offset") is not None and \
                rng.random() < cfg["delete_near"]:
            lst = store.api_list(ctx["order"], ctx.get("filters"))
            lo = max(0, ctx["offset"] - cfg["delete_window"])
            hi = min(len(lst), ctx["offset"] + ctx["limit"] + cfg["delete_window"])
            if lo < hi:
                return lst[rng.randrange(lo, hi)]
        return store.entries[rng.randrange(len(store.entries))]

    def _rel(self, e, ctx):
        """Where e is relative to the page of the triggering request, in the list that request
        paged: behind (before its offset), in_page, ahead; None if that was not a page or
        e is not in that list."""
        if ctx.get("offset") is None:
            return None
        if ctx.get("filters"):
            lst = self.store.api_list(ctx["order"], ctx["filters"])
            try:
                p = next(i for i, x in enumerate(lst) if x is e)
            except StopIteration:
                return None
        else:
            p = self.store.api_pos(e, ctx["order"])
        if p < ctx["offset"]:
            return "behind"
        return "in_page" if p < ctx["offset"] + ctx["limit"] else "ahead"


# --------------------------------------------------------------- faults ----

STATUS_FAULTS = {"400": 400, "401": 401, "403": 403, "429": 429, "500": 500, "502": 502,
                 "503": 503, "504": 504, "echo_headers": 502}
BODY_FAULTS = ("html", "json_error", "invalid_json", "not_objects", "huge", "bad_records",
               "nul", "oversize", "gzip_bomb")
WIRE_FAULTS = ("reset", "hang", "slow", "cut")
FAULT_KINDS = tuple(STATUS_FAULTS) + WIRE_FAULTS + BODY_FAULTS
# The faults a retry gets past: the default "kinds" of a random fault rate.
DEFAULT_RANDOM_FAULTS = ("429", "500", "502", "503", "504", "reset", "cut", "html",
                         "json_error", "invalid_json", "not_objects")
# Fault kinds whose answer carries (part of) the real page.
PAGE_FAULTS = ("slow", "cut", "huge", "bad_records", "nul", "invalid_json", "oversize",
               "gzip_bomb")

# Parameters of each fault kind: name -> (default, check).
_pos_int = (lambda v: _is_int(v) and v >= 1)
FAULT_PARAMS = {
    "429": {"retry_after": ("1", lambda v: v is None or isinstance(v, str) or
                            (_is_int(v) and v >= 0))},
    "503": {"retry_after": (None, lambda v: v is None or isinstance(v, str) or
                            (_is_int(v) and v >= 0))},
    "hang": {"seconds": (120, lambda v: _num(v) and 0 < v <= 3600)},
    "echo_headers": {"pad": (0, lambda v: _is_int(v) and 0 <= v <= 65536),
                     "status": (502, lambda v: v in (400, 502))},
    "slow": {"bytes_per_second": (256, _pos_int)},
    "cut": {"fraction": (0.5, lambda v: _num(v) and 0 < v < 1),
            "rst": (False, lambda v: isinstance(v, bool)),
            "transfer": (None, lambda v: v in (None, "length", "chunked"))},
    "huge": {"bytes": (64 << 20, _pos_int),
             "transfer": (None, lambda v: v in (None, "length", "chunked"))},
    "gzip_bomb": {"bytes": (64 << 20, _pos_int)},
    "bad_records": {"tag": (None, lambda v: v is None or isinstance(v, str))},
    "oversize": {"factor": (3, lambda v: _is_int(v) and 2 <= v <= 1000)},
    "nul": {"string_bytes": (1 << 20, _pos_int),
            "depth": (200, lambda v: _is_int(v) and 1 <= v <= 100000),
            "nul_in_id": (False, lambda v: isinstance(v, bool))},
}
for _k in STATUS_FAULTS:
    FAULT_PARAMS.setdefault(_k, {})
    FAULT_PARAMS[_k]["message"] = (None, lambda v: v is None or isinstance(v, str))
    FAULT_PARAMS[_k]["body_hex"] = (None, lambda v: v is None or _is_hex(v))


def _is_hex(v):
    try:
        return isinstance(v, str) and bytes.fromhex(v) is not None
    except ValueError:
        return False


def norm_fault(x):
    """A fault as given ("503", 503 or {"kind": "429", "retry_after": "2"}) -> a full spec."""
    if _is_int(x) or isinstance(x, str):
        x = {"kind": str(x)}
    if not isinstance(x, dict) or not isinstance(x.get("kind"), (str, int)) or \
            isinstance(x.get("kind"), bool):
        raise BadRequest("a fault is a kind or an object with a kind")
    kind = str(x["kind"])
    if kind not in FAULT_KINDS:
        raise BadRequest("unknown fault kind %r (known: %s)" % (kind, ", ".join(FAULT_KINDS)))
    params = FAULT_PARAMS.get(kind, {})
    spec = {"kind": kind}
    for k, v in x.items():
        if k == "kind":
            continue
        if k not in params:
            raise BadRequest("fault %s takes no parameter %r" % (kind, k))
        if not params[k][1](v):
            raise BadRequest("bad value for fault %s %s: %r" % (kind, k, v))
    for k, (default, _) in params.items():
        v = x.get(k, default)
        spec[k] = float(v) if isinstance(v, Decimal) else v
    return spec


class Faults:
    """Fault injection for /v1/calls (issue 4): a queue for the next requests, then a seeded
    random rate. Only a request that would otherwise get a 200 page consumes a fault (the
    simulator's own 401/400/404/405 answers do not)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue = []
        self.rate = None           # {"rate", "seed", "kinds"}
        self.rng = None
        self.injected = []         # the request-log entries that got a fault

    def configure(self, body):
        unknown = set(body) - {"queue", "append", "rate", "seed", "kinds", "clear"}
        if unknown:
            raise BadRequest("unknown faults keys: %s" % ", ".join(sorted(unknown)))
        queue = None
        if "queue" in body:
            if not isinstance(body["queue"], list):
                raise BadRequest("queue must be a list of faults")
            queue = [norm_fault(f) for f in body["queue"]]
        rate = None
        if "rate" in body:
            r = body["rate"]
            if not (_num(r) and 0 <= r <= 1):
                raise BadRequest("rate must be a number between 0 and 1")
            seed = body.get("seed", 1)
            if not _is_int(seed):
                raise BadRequest("seed must be an integer")
            kinds = body.get("kinds", list(DEFAULT_RANDOM_FAULTS))
            if not isinstance(kinds, list) or not kinds:
                raise BadRequest("kinds must be a non-empty list of faults")
            rate = {"rate": float(r), "seed": seed, "kinds": [norm_fault(k) for k in kinds]}
        elif "seed" in body or "kinds" in body:
            raise BadRequest("seed and kinds go with rate")
        with self.lock:
            if body.get("clear") is True:
                self.queue, self.rate, self.rng, self.injected = [], None, None, []
            elif "clear" in body:
                raise BadRequest("clear must be true")
            if queue is not None:
                self.queue = (self.queue if body.get("append") is True else []) + queue
            if rate is not None:
                self.rate = rate if rate["rate"] > 0 else None
                self.rng = random.Random("vozagent-sim faults %d" % rate["seed"])
        return self.report()

    def next(self):
        """(spec, source) for the next eligible request, or (None, None)."""
        with self.lock:
            if self.queue:
                return self.queue.pop(0), "queue"
            if self.rate and self.rng.random() < self.rate["rate"]:
                return dict(self.rng.choice(self.rate["kinds"])), "rate"
            return None, None

    def record(self, entry):
        with self.lock:
            self.injected.append(entry)

    def report(self):
        with self.lock:
            inj = [{"seq": e["seq"], "kind": e["fault"], "source": e["fault_source"],
                    "spec": e["fault_spec"], "status": e["status"],
                    "outcome": e["fault_outcome"]} for e in self.injected]
            counts = {}
            for e in inj:
                counts[e["kind"]] = counts.get(e["kind"], 0) + 1
            return {"queue": list(self.queue), "rate": self.rate, "injected": inj,
                    "counts": counts}

    def summary(self):
        with self.lock:
            return {"pending": len(self.queue), "rate": self.rate and self.rate["rate"],
                    "injected": len(self.injected)}


def hostile_records(started_at, string_bytes=1 << 20, depth=200, nul_in_id=False):
    """JSON texts of valid but hostile records: NUL in keys and values, a very long string,
    deep nesting (and optionally a NUL in the id). Served by the "nul" fault."""
    base = {"contact_id": "nul-contact", "assistant_id": "nul-assistant",
            "call_type": "inbound", "call_status": "completed", "call_started_at": started_at,
            "call_ended_at": started_at, "duration_seconds": 0}
    r1 = dict(base, id="call-00000000-0000-0000-0a01", note="before\u0000after",
              transcript_summary="\u0000leading and trailing\u0000",
              nested={"k\u0000ey": ["\u0000", "x\u0000y", {"\u0000": None}]})
    r1["key\u0000with nul"] = "value"
    r1["\u0000"] = "\u0000\u0000"
    unit = "long value: é 中 🎉 \"q\" \\ \n\t\u0001 "
    ub = len(unit.encode("utf-8"))
    r2 = dict(base, id="call-00000000-0000-0000-0a02",
              long_text=unit * (string_bytes // ub + 1))
    r3 = dict(base, id="call-00000000-0000-0000-0a03")
    deep = "".join('{"level%d":[' % i if i % 2 == 0 else "[" for i in range(depth)) + \
        '"bottom"' + "".join("]}" if i % 2 == 0 else "]" for i in reversed(range(depth)))
    texts = [jdump(r1), jdump(r2, ascii_only=True),
             jdump(r3)[:-1] + ',"deep":' + deep + "}"]
    if nul_in_id:
        texts.append(jdump(dict(base, id="call-00000000-0000-0000-0a04\u0000x")))
    return texts


HTML_ERROR = ("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
              "<body><center><h1>502 Bad Gateway</h1></center>\n"
              "<hr><center>cloudflare</center></body></html>\n")


# --------------------------------------------------------------- server ----

class Sim:
    """Shared state of one simulator: data, config, request log."""

    def __init__(self, args):
        self.dist = _dist(args.in_progress_recent, args.in_progress_stuck,
                          args.in_progress_fraction)
        self.store = CallStore(args.seed, args.calls, self.dist)
        self.mutator = Mutator(self)
        self.faults = Faults()
        self.cfg_lock = threading.Lock()
        self.config = {"order": args.order, "delay_ms": 0, "chunk_delay_ms": 0,
                       "write_size": 4096, "transfer": "length", "token": args.token,
                       "repeat_last_page": False, "wrap_around": False, "gzip": False}
        self.log_lock = threading.Lock()
        self.requests = []
        self.in_flight = 0           # /v1/ requests being answered now (under log_lock)
        self.max_in_flight = 0       # the most at once since the last requests/clear
        self.seq = 0
        self.connections = 0        # TCP connections accepted, for keep-alive checks
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
            "repeat_last_page": lambda v: isinstance(v, bool),
            "wrap_around": lambda v: isinstance(v, bool),
            "gzip": lambda v: isinstance(v, bool),
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
        """The fault to inject into this /v1/calls request (a spec), or None."""
        spec, source = self.faults.next()
        if spec is not None:
            entry["fault"], entry["fault_spec"], entry["fault_source"] = \
                spec["kind"], spec, source
        return spec


def _dist(recent, stuck, fraction):
    """The in-progress distribution for CallStore.reset, or None for the default one."""
    if recent is None and stuck is None:
        return None         # the default distribution (a fraction alone means nothing)
    for name, v in (("in_progress_recent", recent), ("in_progress_stuck", stuck)):
        if v is not None and not (_is_int(v) and v >= 0):
            raise ValueError("%s must be a non-negative integer" % name)
    if fraction is not None and not (_num(fraction) and 0 <= fraction <= 1):
        raise ValueError("in_progress_fraction must be a number between 0 and 1")
    return {"recent": recent or 0, "stuck": stuck or 0,
            "fraction": DEFAULT_RECENT_FRACTION if fraction is None else float(fraction)}


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
        with self.sim.log_lock:
            self.sim.connections += 1
            self.conn_id = self.sim.connections

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

    def _gzip_ok(self, cfg):
        """Is a 200 page sent gzip-compressed: the config says so and the client accepts it."""
        acc = self.headers.get("Accept-Encoding") or ""
        return cfg["gzip"] and any(x.split(";")[0].strip().lower() == "gzip"
                                   for x in acc.split(","))

    def _stream(self, pieces, cfg):
        """Send a 200 JSON body in several writes, as Content-Length or chunked (gzip-compressed
        when config gzip is on and the request accepts it)."""
        data = "".join(pieces).encode("utf-8")
        gz = self._gzip_ok(cfg)
        if gz:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            data = c.compress(data) + c.flush()
        size = cfg["write_size"]
        delay = cfg["chunk_delay_ms"] / 1000.0
        chunked = cfg["transfer"] == "chunked"
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if gz:
            self.send_header("Content-Encoding", "gzip")
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
                with self.sim.log_lock:
                    self.sim.in_flight += 1
                    self.sim.max_in_flight = max(self.sim.max_in_flight, self.sim.in_flight)
                try:
                    self._serve_calls(method, url)
                finally:
                    with self.sim.log_lock:
                        self.sim.in_flight -= 1
            else:
                self._json(404, {"error": "not found"})
        except OSError:             # the client went away (or a fault closed the socket)
            self.close_connection = True

    # -- the API --

    def _serve_calls(self, method, url):
        t0 = time.time()
        sim, store = self.sim, self.sim.store
        cfg = sim.cfg()
        entry = {"time": t0, "method": method, "path": url.path, "params": {},
                 "limit": None, "offset": None, "status": None, "returned": None,
                 "auth": None, "client": "%s:%d" % self.client_address[:2], "fault": None,
                 "fault_source": None, "fault_spec": None, "fault_outcome": None,
                 "elapsed_ms": None, "conn": self.conn_id,
                 "encoding": "gzip" if self._gzip_ok(cfg) else None}
        try:
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        except ValueError:
            pairs = []
        for k, v in pairs:
            entry["params"][k] = v
        code, body, headers, page = self._answer(method, url, pairs, cfg, entry)
        fault = sim.fault_for(entry) if page is not None else None
        if cfg["delay_ms"]:
            time.sleep(cfg["delay_ms"] / 1000.0)
        texts = None
        with store.lock:
            # The snapshot, the log entry and the mutator's turn are one atomic step: a page
            # never shows the mutations its own request triggers, every later one does.
            if page is not None and (fault is None or fault["kind"] in PAGE_FAULTS):
                n = entry["limit"]
                if fault is not None and fault["kind"] == "oversize":
                    n *= fault["factor"]
                elif fault is not None and fault["kind"] in ("invalid_json", "huge", "gzip_bomb"):
                    n = max(0, n - 1)       # their extra record keeps the answer within limit
                texts = store.page(cfg["order"], entry["offset"], n, page, cfg["repeat_last_page"],
                                   cfg["wrap_around"])
            if fault is None:
                entry["status"] = 200 if page is not None else code
                entry["returned"] = len(texts) if texts is not None else None
            else:
                entry["status"] = fault.get("status") or STATUS_FAULTS.get(fault["kind"],
                                                    None if fault["kind"] in ("reset", "hang")
                                                    else 200)
                entry["returned"] = len(texts) if texts is not None else None
            entry["elapsed_ms"] = round((time.time() - t0) * 1000, 1)
            sim.log_request(entry)
            if fault is not None:
                sim.faults.record(entry)
            if url.path.rstrip("/") == "/v1/calls":
                sim.mutator.on_request({"seq": entry["seq"], "order": cfg["order"],
                                        "offset": entry["offset"] if page is not None else None,
                                        "limit": entry["limit"], "filters": page})
        if fault is not None:
            self._fault(fault, entry, texts, cfg)
        elif page is not None:
            self._stream(["[\n"] + [("" if i == 0 else ",\n") + t for i, t in enumerate(texts)]
                         + ["\n]\n"], cfg)
        else:
            self._send(code, jdump(body) + "\n", headers=headers)

    # -- faults (issue 4) --

    def _fault(self, spec, entry, texts, cfg):
        kind = spec["kind"]
        out = None
        if kind in STATUS_FAULTS:
            out = self._status_fault(spec)
        elif kind == "reset":
            self._rst()
            out = "connection reset (RST) without an answer"
        elif kind == "hang":
            out = self._hang(spec["seconds"])
        elif kind == "slow":
            out = self._slow(_page_bytes(texts), spec["bytes_per_second"])
        elif kind == "cut":
            out = self._cut(_page_bytes(texts), spec, cfg)
        elif kind == "html":
            self._send(200, HTML_ERROR, ctype="text/html; charset=utf-8")
        elif kind == "json_error":
            self._send(200, '{"error": "internal"}\n')
        elif kind == "invalid_json":
            # Starts like the real page, so a streaming parser takes some records first.
            body = "[\n" + "".join(t + ",\n" for t in texts) + \
                '{"id": "call-00000000-0000-0000-0bad", "call_status": completed,\n]\n'
            self._send(200, body, ctype="application/json; charset=utf-8")
        elif kind == "not_objects":
            self._send(200, "[1, 2, 3]\n")
        elif kind == "huge":
            out = self._huge(texts, spec, cfg)
        elif kind == "gzip_bomb":
            out = self._gzip_bomb(texts, spec)
        elif kind == "bad_records":
            out = self._bad_records(texts, cfg, spec["tag"])
        elif kind == "oversize":
            self._stream(["[\n"] + [("" if i == 0 else ",\n") + t for i, t in enumerate(texts)]
                         + ["\n]\n"], cfg)
            out = "%d records for limit=%d" % (len(texts), entry["limit"])
        elif kind == "nul":
            store = self.sim.store
            with store.lock:
                started = fmt_ts(store._newest_us())
            extra = hostile_records(started, spec["string_bytes"], spec["depth"],
                                    spec["nul_in_id"])
            pieces = ["[\n"] + [("" if i == 0 else ",\n") + t
                                for i, t in enumerate(texts + extra)] + ["\n]\n"]
            self._stream(pieces, cfg)
            out = "%d real records + %d hostile ones" % (len(texts), len(extra))
        entry["fault_outcome"] = out or "sent"

    def _status_fault(self, spec):
        kind = spec["kind"]
        code = spec.get("status") or STATUS_FAULTS[kind]
        headers = []
        if spec.get("retry_after") is not None:
            headers.append(("Retry-After", str(spec["retry_after"])))
        if kind == "401":
            headers.append(("WWW-Authenticate", 'Bearer realm="vozagent"'))
        if kind == "echo_headers":
            body = "." * spec["pad"] + "502 Bad Gateway\n%s\n%s" % (
                self.requestline, "".join("%s: %s\n" % kv for kv in self.headers.items()))
            self._send(code, body, ctype="text/plain; charset=utf-8", headers=headers)
            return None
        if spec.get("body_hex") is not None:     # any bytes, valid UTF-8 or not
            self._send(code, bytes.fromhex(spec["body_hex"]), ctype="text/plain",
                       headers=headers)
            return None
        if kind in ("502", "504"):          # a proxy in front of the API answers these
            title = {"502": "502 Bad Gateway", "504": "504 Gateway Time-out"}[kind]
            self._send(code, HTML_ERROR.replace("502 Bad Gateway", title),
                       ctype="text/html; charset=utf-8", headers=headers)
            return None
        msg = spec.get("message") or {
            "400": "invalid request parameters", "401": "invalid or missing API key",
            "403": "this API key may not list calls", "429": "rate limit exceeded",
            "500": "internal server error", "503": "service temporarily unavailable"}[kind]
        err = {"400": "bad_request", "401": "unauthorized", "403": "forbidden",
               "429": "rate_limited", "500": "internal", "503": "unavailable"}[kind]
        self._send(code, jdump({"error": err, "message": msg}) + "\n", headers=headers)
        return None

    def _rst(self):
        """Close the connection with a TCP RST (SO_LINGER 0), no answer."""
        so = self.request
        self.close_connection = True
        try:
            so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()          # drop makefile()'s reference, or close() waits for it
        except OSError:
            pass
        so.close()

    def _hang(self, seconds):
        """Never answer: hold the connection until the client closes it or seconds pass."""
        so = self.request
        self.close_connection = True
        t0 = time.monotonic()
        while True:
            left = t0 + seconds - time.monotonic()
            if left <= 0:
                return "no answer; closed by the simulator after %.1f s" % seconds
            try:
                ready, _, _ = select.select([so], [], [], min(left, 0.5))
                if ready and not so.recv(65536):
                    return "no answer; client closed after %.2f s" % (time.monotonic() - t0)
            except OSError as e:
                return "no answer; client gone after %.2f s (%s)" % (time.monotonic() - t0,
                                                                     e.__class__.__name__)

    def _slow(self, data, bps):
        """The real page with its full Content-Length, trickled at bps bytes per second."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        piece = max(1, bps // 20)
        t0, sent = time.monotonic(), 0
        try:
            while sent < len(data):
                self.wfile.write(data[sent:sent + piece])
                sent += len(data[sent:sent + piece])
                if sent < len(data):
                    wait = t0 + sent / float(bps) - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
        except OSError:
            self.close_connection = True
            return "client went away after %d of %d bytes, %.2f s" % (
                sent, len(data), time.monotonic() - t0)
        return "sent %d bytes in %.2f s" % (len(data), time.monotonic() - t0)

    def _cut(self, data, spec, cfg):
        """Headers promising the whole page, part of the body, then close (FIN, or RST)."""
        chunked = (spec["transfer"] or cfg["transfer"]) == "chunked"
        n = min(len(data) - 1, max(1, int(len(data) * spec["fraction"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        try:
            part = data[:n]
            if chunked:
                half = max(1, len(part) // 2)
                for p in (part[:half], part[half:]):
                    if p:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                # a last chunk that is announced but never delivered in full
                self.wfile.write(b"%x\r\n%s" % (len(data) - n, data[n:n + (len(data) - n) // 2]))
            else:
                self.wfile.write(part)
        except OSError:
            pass
        if spec["rst"]:
            self._rst()
        return "cut after %d of %d body bytes (%s, %s)" % (
            n, len(data), "chunked" if chunked else "Content-Length",
            "RST" if spec["rst"] else "FIN")

    def _huge(self, texts, spec, cfg):
        """A valid array larger than spec["bytes"]: the page plus one record padded with a very
        long string, generated as it is sent."""
        chunked = (spec["transfer"] or cfg["transfer"]) == "chunked"
        store = self.sim.store
        with store.lock:
            started = fmt_ts(store._newest_us())
        head = ("[\n" + "".join(t + ",\n" for t in texts) +
                '{"id":"call-00000000-0000-0000-0b1g","call_status":"completed",'
                '"call_started_at":"%s","padding":"' % started).encode("utf-8")
        tail = b'"}\n]\n'
        pad = max(0, spec["bytes"] + 1 - len(head) - len(tail))
        total = len(head) + pad + len(tail)
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        block = b"0123456789abcdef" * 4096          # 64 KiB

        def pieces():
            yield head
            left = pad
            while left > 0:
                yield block[:min(left, len(block))]
                left -= len(block)
            yield tail
        sent = 0
        try:
            for p in pieces():
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                else:
                    self.wfile.write(p)
                sent += len(p)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
            return "client went away after %d of %d bytes" % (sent, total)
        return "sent %d bytes" % total

    def _gzip_bomb(self, texts, spec):
        """A small gzip body that inflates past spec["bytes"]: the page's records, then
        whitespace, then "]" - valid JSON with every record whole, so only a cap counted
        after decompression refuses it. Sent gzip-encoded whatever the request accepts."""
        head = ("[\n" + ",\n".join(texts)).encode("utf-8")
        tail = b"\n]\n"
        pad = max(0, spec["bytes"] + 1 - len(head) - len(tail))
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [c.compress(head)]
        block = b" " * (1 << 20)
        left = pad
        while left > 0:
            parts.append(c.compress(block[:min(left, len(block))]))
            left -= len(block)
        parts.append(c.compress(tail))
        parts.append(c.flush())
        data = b"".join(parts)
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return "client went away (%d compressed bytes)" % len(data)
        return "%d compressed bytes, %d inflated" % (len(data), len(head) + pad + len(tail))

    def _bad_records(self, texts, cfg, tag=None):
        """The real page plus: a record without an id (first), one with a numeric id (middle),
        and a second copy of the page's first record (last). tag: put in the first two."""
        with self.sim.store.lock:
            started = fmt_ts(self.sim.store._newest_us())
        extra = {} if tag is None else {"tag": tag}
        no_id = jdump(dict({"contact_id": "bad-contact", "call_status": "completed",
                            "call_started_at": started, "note": "this record has no id"},
                           **extra))
        numeric = jdump(dict({"id": 12345, "call_status": "completed",
                              "call_started_at": started,
                              "note": "this record has a numeric id"}, **extra))
        dups = [texts[0]] if texts else [jdump({"id": "call-00000000-0000-0000-0d0b",
                                               "call_status": "completed",
                                               "call_started_at": started})] * 2
        half = len(texts) // 2
        recs = [no_id] + texts[:half] + [numeric] + texts[half:] + dups
        self._stream(["[\n"] + [("" if i == 0 else ",\n") + t for i, t in enumerate(recs)]
                     + ["\n]\n"], cfg)
        return "%d real records + 1 without id, 1 numeric id, 1 duplicate id" % len(texts)

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
                with sim.log_lock:
                    conns = sim.connections
                st.update(order=sim.cfg()["order"], config=_public_cfg(sim.cfg()),
                          connections=conns, max_in_flight=sim.max_in_flight,
                          requests=len(sim.requests), mutator=sim.mutator.summary(),
                          faults=sim.faults.summary())
                return self._json(200, st)
            if method == "GET" and what == "config":
                return self._json(200, {"config": _public_cfg(sim.cfg())})
            if method == "GET" and what == "mutator":
                return self._json(200, sim.mutator.report())
            if method == "GET" and what == "faults":
                return self._json(200, sim.faults.report())
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
                    sim.max_in_flight = sim.in_flight
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
                dist = sim.dist
                keys = ("in_progress_recent", "in_progress_stuck", "in_progress_fraction")
                if any(k in body for k in keys):
                    cur = dist or {}
                    given = [body.get(k, cur.get(k[len("in_progress_"):])) for k in keys]
                    dist = _dist(*given)
                n = store.reset(body.get("seed", 1), _count(body, "calls"), dist)
                return self._json(200, {"count": n})
            if what == "mutator":
                return self._json(200, sim.mutator.configure(body))
            if what == "faults":
                return self._json(200, sim.faults.configure(body))
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


def _page_bytes(texts):
    return ("[\n" + ",\n".join(texts) + "\n]\n").encode("utf-8")


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
    p.add_argument("--in-progress-recent", type=int, metavar="N",
                   help="only the N newest calls may be in progress (see --in-progress-fraction);"
                   " default: any call, 10%%, whatever its age")
    p.add_argument("--in-progress-stuck", type=int, metavar="M",
                   help="plus M old calls stuck in progress (started >= 2 days before the newest)")
    p.add_argument("--in-progress-fraction", type=float, metavar="F",
                   help="share of the N newest calls that are in progress (default %.1f)"
                   % DEFAULT_RECENT_FRACTION)
    p.add_argument("--quiet", action="store_true", help="no request log on stderr")
    args = p.parse_args(argv)
    try:
        if args.in_progress_fraction is not None and args.in_progress_recent is None:
            raise ValueError("in_progress_fraction needs in_progress_recent")
        _dist(args.in_progress_recent, args.in_progress_stuck, args.in_progress_fraction)
    except ValueError as e:
        p.error(str(e).replace("in_progress_", "--in-progress-"))

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
