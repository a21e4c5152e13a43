#!/usr/bin/python3
"""naive_sync: the script a user would write in an afternoon, as a baseline for bench_fast.sh.

    naive_sync.py API_URL API_KEY DSN [TABLE]

Pages through API_URL/calls one request at a time on one keep-alive
connection and upserts each page into TABLE (default naive_calls, shaped
like vozagent.calls) with one psycopg2 execute_values, committing per page;
a 429 waits for its Retry-After and asks again.
Needs Debian's python3-psycopg2 (hence /usr/bin/python3).
"""
import http.client
import json
import sys
import time
import urllib.parse

import psycopg2
import psycopg2.extras

COLS = ("id", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
        "call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
        "call_intent")


def main(api_url, key, dsn, table="naive_calls"):
    url = urllib.parse.urlsplit(api_url)
    api = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    db = psycopg2.connect(dsn)
    cur = db.cursor()
    cur.execute("""CREATE TABLE IF NOT EXISTS %s (
        id text PRIMARY KEY, contact_id text, assistant_id text, call_type text,
        call_status text, duration_seconds numeric, call_started_at timestamptz,
        call_ended_at timestamptz, appointment_booked boolean, lead_qualification text,
        call_intent text, raw jsonb NOT NULL, source text NOT NULL,
        first_seen_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz)""" % table)
    db.commit()
    upsert = ("INSERT INTO %s (%s, raw, source) VALUES %%s ON CONFLICT (id) DO UPDATE SET %s, "
              "updated_at = now()" % (table, ", ".join(COLS), ", ".join(
                  "%s = EXCLUDED.%s" % (c, c) for c in COLS[1:] + ("raw",))))
    offset, total = 0, 0
    while True:
        api.request("GET", "%s/calls?limit=100&offset=%d" % (url.path, offset),
                     headers={"Authorization": "Bearer " + key})
        resp = api.getresponse()
        body = resp.read()
        if resp.status == 429:      # rate limited: wait as told, ask again
            time.sleep(float(resp.getheader("Retry-After", "1")))
            continue
        if resp.status != 200:
            sys.exit("HTTP %d at offset %d: %s" % (resp.status, offset, body[:200]))
        page = json.loads(body)
        if page:
            rows = [tuple(c.get(k) for k in COLS) + (json.dumps(c), "naive") for c in page]
            psycopg2.extras.execute_values(cur, upsert, rows, page_size=100)
            db.commit()
        total += len(page)
        if len(page) < 100:
            break
        offset += 100
    print("naive_sync: %d calls" % total)


if __name__ == "__main__":
    main(*sys.argv[1:])
