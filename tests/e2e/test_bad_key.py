#!/usr/bin/env python3
"""A wrong API key: once, backfill and run each exit 77 within seconds, say the key
was refused, never print the key (nor store it), do not retry, and write no call."""

import os
import re
import subprocess

import harness as h
from harness import check

REFUSED = re.compile(r"(?i)\bkey\b.*\b(refused|rejected|invalid|denied|not accepted|"
                     r"unauthori[sz]ed)|\b(refused|rejected|invalid|denied|unauthori[sz]ed)\b"
                     r".*\bkey\b")


def scenario(order):
    with h.Case("bad_key", order=order, seed=51, calls=60, page_size=20) as c:
        wrong = "wrong-key-" + os.urandom(9).hex()
        c.secrets.append(wrong)
        keyfile = c.write_config(wrong + "\n", name="token")
        variants = [("once", {"VOZAGENT_API_TOKEN": wrong}),
                    ("backfill", {"VOZAGENT_API_TOKEN": wrong}),
                    ("run", {"VOZAGENT_API_TOKEN": wrong, "VOZAGENT_POLL_INTERVAL": "1s"}),
                    ("once", {"VOZAGENT_API_TOKEN": None, "VOZAGENT_API_TOKEN_FILE": keyfile})]
        for cmd, env in variants:
            what = "%s with the key from %s" % (cmd, "a file" if None in env.values() else "env")
            c.sim.clear_requests()
            r = c.run(cmd, env=env, timeout=30)
            c.expect_rc(r, 77, what)
            check(r.elapsed < h.scaled(10), "%s took %.1fs to give up" % (what, r.elapsed))
            check(REFUSED.search(r.err), "%s: stderr does not say the key was refused:\n%s"
                  % (what, h.tail(r.err, 10)))
            reqs = h.api_log_since(c.sim.requests())
            check(reqs and all(x["status"] == 401 for x in reqs),
                  "%s: requests %s" % (what, [(x["status"], x["auth"]) for x in reqs]))
            check(len(reqs) <= 3, "%s: %d requests with a refused key (retrying?)"
                  % (what, len(reqs)))
            h.log("%s: exit 77 in %.2fs after %d request(s): %s"
                  % (what, r.elapsed, len(reqs), h.tail(r.err, 1)))
        check(c.count_calls() == 0, "calls were written with a refused key")
        if c.has_table("vozagent.calls"):
            dump = subprocess.run([h.find_tool("pg_dump"), "-a", "-n", "vozagent"],
                                  env=c.pg.env(c.db), capture_output=True, timeout=60)
            check(dump.returncode == 0, "pg_dump failed: %s" % dump.stderr[-500:])
            text = dump.stdout.decode("utf-8", "replace")
            for s in c.secrets:
                check(s not in text, "an API key is stored in the database")


if __name__ == "__main__":
    h.main(h.both_orders(scenario, "bad key"))
