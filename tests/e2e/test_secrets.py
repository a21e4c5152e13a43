#!/usr/bin/env python3
"""The API key stays secret:
- http:// to a host that is not loopback is a configuration error (exit 78, file:line)
  unless allow_insecure_http = yes, which is accepted with a warning; loopback
  (127.0.0.1, localhost) stays allowed, as every other e2e test relies on;
- a token file, or a config file holding api_token, readable by group or others is
  named in a warning with its mode;
- a running `run` given VOZAGENT_API_TOKEN in its environment no longer shows it in
  /proc/PID/environ, and is not dumpable (its /proc/PID files belong to root while it
  runs as another user) and has a core size limit of 0;
- under a libcurl that cannot limit a transfer's protocols (the curl_noproto module,
  preloaded), the daemon refuses to start instead of sending the key unrestricted;
- a proxy error page that echoes the request headers (Authorization: Bearer ...) does
  not carry the key into the log, sync_runs.error or any table: it is [redacted],
  also when the key straddles the end of the excerpt kept."""

import os
import subprocess

import faultlib as fl
import harness as h
from harness import check

# Counts requests and commits one by one: see harness.SEQUENTIAL.
h.DEFAULT_ENV.update(h.SEQUENTIAL)

NO_ENV = {k: None for k in ("VOZAGENT_API_URL", "VOZAGENT_API_TOKEN", "VOZAGENT_DATABASE_URL",
                            "VOZAGENT_SOURCE", "VOZAGENT_HTTP_TIMEOUT", "VOZAGENT_PAGE_SIZE")}


def token_file(c, mode=0o600, name="token"):
    path = c.write_config(c.token + "\n", name=name)
    os.chmod(path, mode)
    return path


def config_lines(c, api_url, token_line):
    return ["# vozagent-sync e2e: secrets",
            token_line,
            "api_url = %s" % api_url,                  # line 3
            "database_url = %s" % c.pg.conninfo(c.db),
            "source = %s" % c.source]


def write(c, lines, name, mode=0o600):
    path = c.write_config("\n".join(lines) + "\n", name=name)
    os.chmod(path, mode)
    return path


def insecure_http():
    with h.Case("secrets_http", seed=81, calls=10) as c:
        tok = "api_token_file = %s" % token_file(c)
        # -n only: neither the old code nor the new one may send anything to these hosts
        for url in ("http://api.vozagent.example/v1", "http://192.0.2.10:8080/v1",
                    "http://[2001:db8::1]/v1", "http://127.1/v1"):
            path = write(c, config_lines(c, url, tok), "http.conf")
            r = c.run("-n", config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 78, "api_url = %s" % url)
            check("%s:3:" % path in r.err and "api_url uses http://" in r.err and
                  "allow_insecure_http" in r.err,
                  "%s: the error does not name %s:3, http:// and allow_insecure_http:\n%s"
                  % (url, path, r.err))
            check("OK" not in r.out, "%s: -n printed OK" % url)
            h.log("%s: %s" % (url, h.tail(r.err, 1)))

        # the operator's explicit choice: accepted, with a warning
        path = write(c, config_lines(c, "http://api.vozagent.example/v1", tok) +
                     ["allow_insecure_http = yes"], "insecure.conf")
        r = c.run("-n", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 0, "allow_insecure_http = yes")
        check("warning" in r.err and "unencrypted" in r.err and "api.vozagent.example" in r.err,
              "allow_insecure_http = yes gives no warning:\n%s" % r.err)

        # loopback stays allowed, by address and by name, and works
        for host in ("127.0.0.1", "localhost"):
            url = c.sim.api_url.replace("127.0.0.1", host)
            path = write(c, config_lines(c, url, tok), "loopback.conf")
            r = c.run("once", config=path, env=NO_ENV)
            c.expect_rc(r, 0, "api_url = %s" % url)
            check("unencrypted" not in r.err, "loopback http:// warned:\n%s" % r.err)
        c.assert_exact("after once over http://127.0.0.1 and http://localhost")
        fl.assert_secret_free(c, what="insecure http")


def file_modes():
    with h.Case("secrets_modes", seed=82, calls=20) as c:
        warn = "holds the API key and is readable by group/others"

        # a token file others can read: warned at start of a real pass, naming file and mode
        loose = token_file(c, 0o644, "loose-token")
        path = write(c, config_lines(c, c.sim.api_url, "api_token_file = %s" % loose),
                     "loose.conf", 0o644)
        r = c.run("once", config=path, env=NO_ENV)
        c.expect_rc(r, 0, "token file of mode 0644")
        check("%s %s (mode 0644): chmod 600 it" % (loose, warn) in r.err,
              "no warning naming %s and mode 0644:\n%s" % (loose, r.err))
        check(path + " " + warn not in r.err,
              "the config file holds no key, yet it is warned about:\n%s" % r.err)
        c.assert_exact("after once with a loose token file")

        for mode in (0o640, 0o604):
            os.chmod(loose, mode)
            r = c.run("-n", config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 0, "token file of mode %04o" % mode)
            check("%s %s (mode %04o)" % (loose, warn, mode) in r.err,
                  "no warning for mode %04o:\n%s" % (mode, r.err))

        # 0600 (and 0400): no warning
        for mode in (0o600, 0o400):
            os.chmod(loose, mode)
            r = c.run("-n", config=path, env=NO_ENV, timeout=30)
            c.expect_rc(r, 0, "token file of mode %04o" % mode)
            check(warn not in r.err, "mode %04o warned:\n%s" % (mode, r.err))

        # the key in the config file itself
        inline = ["api_token = %s" % c.token]
        path = write(c, config_lines(c, c.sim.api_url, inline[0]), "inline.conf", 0o644)
        r = c.run("-n", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 0, "api_token in a config file of mode 0644")
        check("%s %s (mode 0644)" % (path, warn) in r.err,
              "no warning naming the config file %s:\n%s" % (path, r.err))
        os.chmod(path, 0o600)
        r = c.run("-n", config=path, env=NO_ENV, timeout=30)
        c.expect_rc(r, 0, "api_token in a config file of mode 0600")
        check(warn not in r.err, "a 0600 config file warned:\n%s" % r.err)
        fl.assert_secret_free(c, what="file modes")


def proc_environ():
    """run, as a user other than root, with the key in its environment."""
    with h.Case("secrets_proc", seed=83, calls=60) as c:
        kw = {}
        if os.geteuid() == 0:
            # the owner of the test cluster's socket directory can connect to it
            st = os.stat(c.pg.vars["PGHOST"])
            check(st.st_uid != 0, "the test cluster's socket directory belongs to root")
            kw = dict(user=st.st_uid, group=st.st_gid, extra_groups=[])
            os.chmod(c.tmp, 0o755)
            os.chmod(c.config_path, 0o644)
        run_uid = kw.get("user", os.geteuid())
        out = open(os.path.join(c.tmp, "proc.out"), "wb")
        err = open(os.path.join(c.tmp, "proc.err"), "wb")
        p = subprocess.Popen(c.cmd(["run"]), env=c.env({"VOZAGENT_POLL_INTERVAL": "1s"}),
                             stdout=out, stderr=err, **kw)
        out.close()
        err.close()
        c.procs.append(p)
        h.log("spawned run as uid %d (pid %d)" % (run_uid, p.pid))
        c.wait_exact("while run runs", proc=p)
        with open("/proc/%d/environ" % p.pid, "rb") as f:
            environ = f.read()
        check(b"VOZAGENT_SOURCE=" in environ, "/proc/%d/environ is not the daemon's" % p.pid)
        check(c.token.encode() not in environ,
              "the API key is still in /proc/%d/environ of the running daemon" % p.pid)
        owner = os.stat("/proc/%d/environ" % p.pid).st_uid
        check(owner == 0 and run_uid != 0,
              "the daemon (uid %d) is dumpable: /proc/%d/environ belongs to uid %d, not root"
              % (run_uid, p.pid, owner))
        with open("/proc/%d/limits" % p.pid) as f:
            core = [x.split() for x in f if x.startswith("Max core file size")]
        check(core and core[0][4:6] == ["0", "0"],
              "the daemon may write core files: %s" % core)
        h.log("environ clean, /proc/PID owned by root, core limit %s" % core[0][4:6])
        h.terminate(p)
        rc = p.wait(h.scaled(30))
        with open(os.path.join(c.tmp, "proc.err"), encoding="utf-8", errors="replace") as f:
            text = f.read()
        check(rc == 0, "run exited %s after SIGTERM:\n%s" % (rc, h.tail(text)))
        check(c.token not in text, "the API key appears in the daemon's stderr")
        fl.assert_secret_free(c, extra=[text], what="proc")


def protocols_unrestricted():
    lib = os.environ.get("VOZAGENT_TEST_CURL_NOPROTO")
    check(lib and os.path.exists(lib), "VOZAGENT_TEST_CURL_NOPROTO does not name the built "
          "curl_noproto module (%r): run this through ctest" % lib)
    with h.Case("secrets_noproto", seed=85, calls=20) as c:
        env = {"LD_PRELOAD": lib,
               # a sanitized binary would refuse a preload that comes before its runtime
               "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                                ":verify_asan_link_order=0").lstrip(":")}
        for cmd in ("once", "run"):
            r = c.run(cmd, env=env, timeout=60)
            c.expect_rc(r, 70, "%s under a libcurl that cannot limit protocols" % cmd)
            check("cannot limit requests to http,https" in r.err,
                  "%s: the error does not say the protocols cannot be limited:\n%s"
                  % (cmd, h.tail(r.err, 5)))
            check(not h.api_log_since(c.sim.requests()),
                  "%s: a request reached the API without the protocol limit" % cmd)
        h.log("refused: %s" % h.tail(r.err, 1))
        # the control: the same case without the module works
        c.expect_rc(c.run("once"), 0, "without the module")
        c.assert_exact("after once without the module")


def echoed_key(order):
    with h.Case("secrets_echo", order=order, seed=84, calls=30) as c:
        # the key (at about byte 176 + pad) straddles the 200 bytes of the excerpt that the
        # retry message quotes, or lies past them, or past the excerpt
        pads = (0, 10, 20, 40, 125)
        c.sim.faults(queue=[{"kind": "echo_headers", "pad": p} for p in pads])
        r = c.run("once")          # check_secrets: the key is in neither stdout nor stderr
        c.expect_rc(r, 75, "every attempt got a proxy error page")
        prefix = c.token[:16]
        check(prefix not in r.err, "the start of the API key appears in stderr:\n%s" % r.err)
        check("[redacted]" in r.err, "no excerpt with the key redacted in stderr (the echo "
              "fault did not reach the excerpt?):\n%s" % r.err)
        run = c.last_run()
        error = run.get("error") or ""
        check(c.token not in error and prefix not in error,
              "the API key is in sync_runs.error: %s" % error)
        check("Authorization" in error or "502" in error,
              "sync_runs.error does not record the proxy error: %r" % error)
        h.log("sync_runs.error: %s" % h.short(error, 300))
        # a 400 ends the pass at once and its message quotes the whole excerpt (255 bytes;
        # the key starts at about byte 176 + pad): the key inside it, or cut by its end
        # (pads 60 and 70), leaves not even its start
        for pad in (0, 60, 70):
            c.sim.faults(queue=[{"kind": "echo_headers", "status": 400, "pad": pad}])
            r = c.run("once")
            c.expect_rc(r, 70, "a 400 whose page echoes the request headers (pad %d)" % pad)
            error = c.last_run().get("error") or ""
            for what, text in (("stderr", r.err), ("sync_runs.error", error)):
                check(prefix not in text, "pad %d: the start of the API key is in %s:\n%s"
                      % (pad, what, text))
            check("[redact" in r.err, "pad %d: no [redacted] in the message:\n%s"
                  % (pad, r.err))
        fl.assert_secret_free(c, what="echoed key")
        # the next pass gets past it
        c.expect_rc(c.run("once"), 0, "after the faults")
        c.assert_exact("after the faults")


if __name__ == "__main__":
    h.main([("http:// only to loopback", insecure_http),
            ("secret files others can read are warned about", file_modes),
            ("the key leaves /proc/PID/environ; no core dumps", proc_environ),
            ("no start when requests cannot be limited to http(s)", protocols_unrestricted)] +
           h.both_orders(echoed_key, "an echoed key is redacted"))
