#!/usr/bin/env python3
"""Configuration and command line: a complete config file works on its own (the
control case); each bad line (unknown key, bad duration, page_size 0 / 101 / not a
number) exits 78 naming the key, the file and the line, before any network or
database work; command-line errors exit 64; -h and -V exit 0."""

import os
import re

import harness as h
from harness import check

# The environment the harness gives the binary, minus what the file provides.
NO_ENV = {k: None for k in ("VOZAGENT_API_URL", "VOZAGENT_API_TOKEN", "VOZAGENT_DATABASE_URL",
                            "VOZAGENT_SOURCE", "VOZAGENT_HTTP_TIMEOUT", "VOZAGENT_PAGE_SIZE")}


def good_config(c, tokenfile):
    return "\n".join([
        "# vozagent-sync e2e: every setting from this file",
        "",
        "api_url = %s" % c.sim.api_url,
        "# the key is in a file",
        "api_token_file = %s" % tokenfile,
        "database_url = %s" % c.pg.conninfo(c.db),
        "source = %s" % c.source,
        "poll_interval = 5m",
        "page_size = 33",
        "lookback = 2h",
        "http_timeout = 20s",
        "order = auto",
        ""])


def control_case(order):
    """The same kind of file, without a mistake, works: the error cases below fail
    because of their one bad line, not because the file is otherwise unusable."""
    with h.Case("config_ok", order=order, seed=71, calls=80) as c:
        tokenfile = c.write_config(c.token + "\n", name="token")
        path = c.write_config(good_config(c, tokenfile))
        r = c.run("once", config=path, env=NO_ENV)
        c.expect_rc(r, 0, "complete config file, nothing from the environment")
        c.assert_exact("after once with the file config")
        reqs = h.api_log_since(c.sim.requests())
        check(reqs and all(x["limit"] == 33 for x in reqs),
              "page_size = 33 from the file was not used: limits %s"
              % sorted({x["limit"] for x in reqs}))

        # The environment wins over the file.
        c.sim.clear_requests()
        env = dict(NO_ENV, VOZAGENT_PAGE_SIZE="21")
        c.expect_rc(c.run("once", config=path, env=env), 0, "VOZAGENT_PAGE_SIZE=21")
        reqs = h.api_log_since(c.sim.requests())
        check(reqs and all(x["limit"] == 21 for x in reqs),
              "VOZAGENT_PAGE_SIZE=21 did not override page_size = 33: limits %s"
              % sorted({x["limit"] for x in reqs}))

        # No api_token(_file): the key comes from $CREDENTIALS_DIRECTORY/api_token.
        creds = c.tmp + "/credentials"
        os.mkdir(creds)
        with open(creds + "/api_token", "w") as f:
            f.write(c.token + "\n")
        path = c.write_config("\n".join(x for x in good_config(c, tokenfile).split("\n")
                                        if not x.startswith("api_token_file")), name="creds.conf")
        c.sim.add(count=5)
        r = c.run("once", config=path, env=dict(NO_ENV, CREDENTIALS_DIRECTORY=creds))
        c.expect_rc(r, 0, "key from $CREDENTIALS_DIRECTORY/api_token")
        c.assert_exact("after once with the key from $CREDENTIALS_DIRECTORY")


BAD_LINES = [
    # (name, bad line, key the message must name)
    ("unknown key", "bogus_setting = 1", "bogus_setting"),
    ("bad duration", "poll_interval = 5 minutes", "poll_interval"),
    ("negative duration", "lookback = -2h", "lookback"),
    ("page_size 0", "page_size = 0", "page_size"),
    ("page_size 101", "page_size = 101", "page_size"),
    ("page_size not a number", "page_size = ten", "page_size"),
]


def nothing_touched(c, what):
    reqs = h.api_log_since(c.sim.requests())
    check(not reqs, "%s: the API got %d request(s)" % (what, len(reqs)))
    check(c.scalar("select to_regnamespace('vozagent') is null") == "t",
          "%s: the database was touched (schema vozagent exists)" % what)


def config_errors():
    with h.Case("config_err", seed=72, calls=20) as c:
        tokenfile = c.write_config(c.token + "\n", name="token")
        for name, line, key in BAD_LINES:
            # The file minus any valid line for the same key; the bad line is line 8.
            base = [x for x in good_config(c, tokenfile).split("\n")
                    if not x.startswith(key + " ")]
            lines = base[:7] + [line] + base[7:]
            path = c.write_config("\n".join(lines), name="bad.conf")
            r = c.run("once", config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 78, name)
            check(path in r.err, "%s: stderr does not name the file %s:\n%s"
                  % (name, path, h.tail(r.err, 5)))
            check(re.search(r"(:8\b|\bline 8\b)", r.err),
                  "%s: stderr does not name line 8:\n%s" % (name, h.tail(r.err, 5)))
            check(key in r.err, "%s: stderr does not name the key %s:\n%s"
                  % (name, key, h.tail(r.err, 5)))
            nothing_touched(c, name)
            h.log("%s: %s" % (name, h.tail(r.err, 1)))

        # From the environment: no file and line to name, but the key or variable.
        for var, value, key in (("VOZAGENT_PAGE_SIZE", "0", "page_size"),
                                ("VOZAGENT_LOOKBACK", "soon", "lookback"),
                                ("VOZAGENT_POLL_INTERVAL", "90q", "poll_interval")):
            r = c.run("once", env={var: value}, timeout=30)
            c.expect_rc(r, 78, "%s=%s" % (var, value))
            check(key in r.err or var in r.err, "%s=%s: stderr names neither %s nor %s:\n%s"
                  % (var, value, key, var, h.tail(r.err, 5)))
            nothing_touched(c, "%s=%s" % (var, value))

        r = c.run("once", config="/nonexistent/vozagent-e2e.conf", timeout=30)
        c.expect_rc(r, 78, "missing config file")
        check("/nonexistent/vozagent-e2e.conf" in r.err, "missing config file not named:\n%s"
              % h.tail(r.err, 5))
        nothing_touched(c, "missing config file")


def cli_errors():
    with h.Case("cli", seed=73, calls=20) as c:
        for args in ([], ["frobnicate"], ["--bogus-option", "once"], ["-c"],
                     ["-c", c.config_path, "once", "extra"]):
            r = c.run(*args, raw=True, timeout=30)
            c.expect_rc(r, 64, "usage error")
            check("usage" in (r.out + r.err).lower(), "%s: no usage printed" % (args,))
            nothing_touched(c, " ".join(args) or "(no arguments)")
        for flag in ("-h", "--help"):
            r = c.run(flag, raw=True, timeout=30)
            c.expect_rc(r, 0)
            check("usage" in (r.out + r.err).lower(), "%s prints no usage" % flag)
            for cmd in ("run", "once", "backfill", "migrate", "status"):
                check(cmd in r.out + r.err, "%s does not mention the command %s" % (flag, cmd))
        for flag in ("-V", "--version"):
            r = c.run(flag, raw=True, timeout=30)
            c.expect_rc(r, 0)
            check(re.search(r"\d+\.\d+", r.out), "%s prints no version on stdout: %r"
                  % (flag, r.out))
        nothing_touched(c, "-h/-V")


if __name__ == "__main__":
    h.main(h.both_orders(control_case, "config file works") +
           [("config errors exit 78", config_errors), ("usage errors exit 64", cli_errors)])
