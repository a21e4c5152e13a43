#!/usr/bin/env python3
"""Issue 4, "From the operator", beyond what test_config.py covers (one bad line at a
time): many mistakes in one file are all reported at once, each with its file and
line, exit 78, before any network or database work; max_body_size errors; an
api_token_file that cannot be read or holds no key; an empty key; a key with white
space (whose value is never echoed); a malformed database_url; `-n` checks the
configuration and exits 0 / 78 without touching the network or the database."""

import os
import re

import faultlib as fl
import harness as h
from harness import check

NO_ENV = {k: None for k in ("VOZAGENT_API_URL", "VOZAGENT_API_TOKEN", "VOZAGENT_DATABASE_URL",
                            "VOZAGENT_SOURCE", "VOZAGENT_HTTP_TIMEOUT", "VOZAGENT_PAGE_SIZE")}


def nothing_touched(c, what):
    reqs = fl.api_reqs(c.sim)
    check(not reqs, "%s: the API got %d request(s)" % (what, len(reqs)))
    check(c.scalar("select to_regnamespace('vozagent') is null") == "t",
          "%s: the database was touched (schema vozagent exists)" % what)


def base_lines(c, tokenfile):
    return ["# vozagent-sync e2e: operator errors",
            "api_url = %s" % c.sim.api_url,
            "api_token_file = %s" % tokenfile,
            "database_url = %s" % c.pg.conninfo(c.db),
            "source = %s" % c.source]


def expect_config_error(c, lines, errors, what, env=None, args=("once",)):
    """Write `lines` as the config file and run; `errors` is [(line number, words the
    message for that line must hold)]. Exit 78, one message per mistake, each naming
    file:line, nothing touched."""
    path = c.write_config("\n".join(lines) + "\n", name="bad.conf")
    c.sim.clear_requests()
    r = c.run(*args, config=path, env=dict(NO_ENV, **(env or {})), timeout=30)
    c.expect_rc(r, 78, what)
    msgs = [x for x in r.err.split("\n") if path in x or "VOZAGENT_" in x]
    for line, words in errors:
        where = "%s:%d" % (path, line) if line else None
        hit = [m for m in msgs if (where is None or where + ":" in m or where + " " in m or
                                   where + ")" in m)
               and all(w.lower() in m.lower() for w in words)]
        check(hit, "%s: no message names %s and says %s:\n%s"
              % (what, where or "the variable", words, r.err))
    check(len(msgs) >= len(errors), "%s: %d mistakes but %d messages:\n%s"
          % (what, len(errors), len(msgs), r.err))
    nothing_touched(c, what)
    h.log("%s: exit 78, %d messages:\n    %s" % (what, len(msgs), "\n    ".join(msgs)))
    return r


def many_mistakes():
    with h.Case("operator_many", seed=471, calls=20) as c:
        tokenfile = c.write_config(c.token + "\n", name="token")
        lines = base_lines(c, tokenfile)                       # lines 1-5 are good
        lines[1] = "api_url = ftp://vozagent.example/v1"       # 2
        lines[2] = "api_token_file = %s/missing-token" % c.tmp  # 3
        lines[3] = "database_url = port=abc = ="               # 4
        lines += ["page_size = 0",                             # 6
                  "poll_interval = 5 minutes",                 # 7
                  "bogus_setting = 1",                         # 8
                  "max_body_size = 12q",                       # 9
                  "lookback = soon",                           # 10
                  "order = sideways",                          # 11
                  "log_level = loud",                          # 12
                  "call_type = sideways",                      # 13
                  "http_timeout = 500ms",                      # 14
                  "source = twice"]                            # 15 (set twice)
        errors = [(2, ["api_url"]), (3, ["api_token_file", "missing-token"]),
                  (4, ["database_url"]), (6, ["page_size"]), (7, ["poll_interval"]),
                  (8, ["bogus_setting"]), (9, ["max_body_size"]), (10, ["lookback"]),
                  (11, ["order"]), (12, ["log_level"]), (13, ["call_type"]),
                  (14, ["http_timeout"]), (15, ["source", "twice"])]
        expect_config_error(c, lines, errors, "13 mistakes in one file")
        r = expect_config_error(c, lines, errors, "the same file with -n", args=("-n",))
        check("OK" not in r.out, "-n printed OK for a bad file")
        # the same mistakes and no key at all: the missing key is one more of them
        soft = fl.Soft()
        nokey = [x for x in lines if not x.startswith("api_token_file")]
        path = c.write_config("\n".join(nokey) + "\n", name="nokey.conf")
        r = c.run("once", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 78, "12 mistakes and no key")
        soft.check("no API key" in r.err and "bogus_setting" in r.err,
                   "mistakes and a missing key are not reported at once:\n%s" % r.err)
        h.log("12 mistakes and no key: %s" % ("both reported" if "no API key" in r.err and
                                              "bogus_setting" in r.err else
                                              "only one kind reported"))
        fl.assert_secret_free(c, what="many mistakes")
        soft.done()


def max_body_size():
    with h.Case("operator_size", seed=472, calls=20) as c:
        tokenfile = c.write_config(c.token + "\n", name="token")
        for value, words in (("12q", ["max_body_size", "12q"]),
                             ("1k", ["max_body_size", "64k"]),
                             ("63k", ["max_body_size", "64k"]),
                             ("2G", ["max_body_size", "1G"]),
                             ("-5M", ["max_body_size"]),
                             ("", ["max_body_size"])):
            expect_config_error(c, base_lines(c, tokenfile) + ["max_body_size = %s" % value],
                                [(6, words)], "max_body_size = %r" % value)
        r = c.run("once", env={"VOZAGENT_MAX_BODY_SIZE": "10"}, timeout=30)
        c.expect_rc(r, 78, "VOZAGENT_MAX_BODY_SIZE=10")
        check("VOZAGENT_MAX_BODY_SIZE" in r.err, "the variable is not named:\n%s" % r.err)
        nothing_touched(c, "VOZAGENT_MAX_BODY_SIZE=10")
        for value in ("64k", "1M", "65536", "1G"):
            path = c.write_config("\n".join(base_lines(c, tokenfile) +
                                            ["max_body_size = %s" % value]) + "\n",
                                  name="ok.conf")
            r = c.run("-n", config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 0, "-n with max_body_size = %s" % value)
        h.log("max_body_size 64k, 1M, 65536, 1G accepted by -n")
        fl.assert_secret_free(c, what="max_body_size")


def token_errors():
    with h.Case("operator_token", seed=473, calls=20) as c:
        spaced = "sp ace-" + os.urandom(6).hex()
        c.secrets.append(spaced)
        good = base_lines(c, "/unused")
        del good[2]                                   # no api_token_file: lines 1-4
        empty = c.write_config("", name="empty-token")
        blank = c.write_config(" \n\n", name="blank-token")
        cases = [
            ("api_token_file that does not exist",
             ["api_token_file = %s/nope/token" % c.tmp], ["api_token_file", "nope/token"]),
            ("api_token_file that is a directory",
             ["api_token_file = %s" % c.tmp], ["api_token_file", c.tmp]),
            ("an empty api_token_file", ["api_token_file = %s" % empty], ["empty"]),
            ("an api_token_file of white space", ["api_token_file = %s" % blank], ["empty"]),
            ("api_token = (empty)", ["api_token = "], ["empty"]),
            ('api_token = ""', ['api_token = ""'], ["empty"]),
            ("a key with white space", ['api_token = "%s"' % spaced], ["white space"]),
        ]
        if os.geteuid() != 0:
            closed = c.write_config(c.token + "\n", name="closed-token")
            os.chmod(closed, 0)
            cases.append(("an api_token_file without read permission",
                          ["api_token_file = %s" % closed], ["api_token_file", "permission"]))
        soft = fl.Soft()
        for what, extra, words in cases:
            r = expect_config_error(c, good + extra, [(5, words)], what)
            if "directory" in what:
                soft.check("directory" in r.err.lower(), "api_token_file is a directory: the "
                           "message does not say so:\n%s" % r.err)
        r = c.run("once", env={"VOZAGENT_API_TOKEN": ""}, timeout=30)
        c.expect_rc(r, 78, "VOZAGENT_API_TOKEN=''")
        check("VOZAGENT_API_TOKEN" in r.err and "empty" in r.err,
              "VOZAGENT_API_TOKEN='': the message does not say the key from "
              "VOZAGENT_API_TOKEN is empty:\n%s" % r.err)
        nothing_touched(c, "VOZAGENT_API_TOKEN=''")
        # no key at all: once/backfill/run and -n (for run) refuse; migrate needs none
        path = c.write_config("\n".join(good) + "\n", name="nokey.conf")
        for args in (("once",), ("-n",), ("-n", "backfill")):
            r = c.run(*args, config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 78, "%s without a key" % " ".join(args))
            check("api_token" in r.err, "%s without a key: %s" % (" ".join(args), r.err))
        r = c.run("-n", "migrate", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 0, "-n migrate without a key")
        nothing_touched(c, "no key")
        h.log("no key: once / -n / -n backfill exit 78; -n migrate exits 0")
        fl.assert_secret_free(c, what="token errors")
        soft.done()


def check_flag():
    with h.Case("operator_check", seed=474, calls=20) as c:
        tokenfile = c.write_config(c.token + "\n", name="token")
        lines = base_lines(c, tokenfile)
        path = c.write_config("\n".join(lines) + "\n", name="good.conf")
        for args in (("-n",), ("-n", "once"), ("--check", "backfill"), ("-n", "run")):
            c.sim.clear_requests()
            r = c.run(*args, config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 0, " ".join(args))
            check(re.search(r"(?i)\bok\b", r.out), "%s: stdout does not say OK: %r"
                  % (" ".join(args), r.out))
            nothing_touched(c, " ".join(args))
        # -n connects to nothing: a dead database and API do not matter
        dead = list(lines)
        dead[1] = "api_url = http://127.0.0.1:%d/v1" % fl.closed_port()
        dead[3] = "database_url = host=127.0.0.1 port=%d dbname=x" % fl.closed_port()
        path = c.write_config("\n".join(dead) + "\n", name="dead.conf")
        r = c.run("-n", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 0, "-n with an unreachable API and database")
        check(r.elapsed < h.scaled(2), "-n took %.1fs (did it connect?)" % r.elapsed)
        r = c.run("-n", "frobnicate", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 64, "-n with an unknown command")
        h.log("-n: exit 0 with OK for a good file (also when nothing is reachable), "
              "64 for an unknown command")
        fl.assert_secret_free(c, what="-n")


if __name__ == "__main__":
    h.main([("many mistakes at once", many_mistakes),
            ("max_body_size", max_body_size),
            ("api key errors", token_errors),
            ("-n", check_flag)])
