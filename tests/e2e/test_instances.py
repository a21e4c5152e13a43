#!/usr/bin/env python3
"""instances: what `vozagent-sync@acme` and `vozagent-sync@globex` do - two daemons, each
with its own config file, source, API account (one simulator each, one listing oldest
first, the other newest first) and API key passed as its own systemd credential, into
one database. Both mirrors are exact and separate while calls are added and finished
on both sides, and each stops with exit 0."""

import os

import harness as h
from harness import check


def instance(c, name, sim, token):
    d = os.path.join(c.tmp, "cred-" + name)
    os.makedirs(d)
    with open(os.path.join(d, "api_token"), "w") as f:
        f.write(token + "\n")
    os.chmod(os.path.join(d, "api_token"), 0o600)
    conf = c.write_config("source = %s\napi_url = %s\ndatabase_url = \"%s\"\n"
                          "poll_interval = 1s\npage_size = 25\n"
                          % (name, sim.api_url, c.pg.conninfo(c.db)), name + ".conf")
    env = {"VOZAGENT_SOURCE": None, "VOZAGENT_API_URL": None, "VOZAGENT_DATABASE_URL": None,
           "VOZAGENT_API_TOKEN": None, "CREDENTIALS_DIRECTORY": d}
    return c.spawn("run", env=env, config=conf)


def exact(c, name, sim):
    rows = [r for r in c.mirror_rows() if r["source"] == name]
    return h.mirror_diff(sim.calls(), rows, name)


def two_instances():
    with h.Case("instances", order="oldest_first", seed=5, calls=120) as c:
        other_token = "e2e-key-" + os.urandom(9).hex()
        c.secrets.append(other_token)
        d = os.path.join(c.tmp, "globex")
        os.makedirs(d)
        other = h.Sim(d, other_token, seed=6, calls=90, order="newest_first")
        try:
            pa = instance(c, "acme", c.sim, c.token)
            pb = instance(c, "globex", other, other_token)
            for rnd in range(3):
                c.wait_for("both mirrors exact (round %d)" % rnd,
                           lambda: pa.poll() is not None or pb.poll() is not None or
                           (c.has_table("vozagent.calls") and not exact(c, "acme", c.sim)
                            and not exact(c, "globex", other)), timeout=40, interval=0.3)
                check(pa.poll() is None and pb.poll() is None,
                      "an instance exited: acme %s, globex %s" % (pa.poll(), pb.poll()))
                h.log("round %d: acme %d rows, globex %d rows" % (rnd, int(c.scalar(
                    "select count(*) from vozagent.calls where source = 'acme'")),
                    int(c.scalar("select count(*) from vozagent.calls "
                                 "where source = 'globex'"))))
                if rnd == 2:
                    break
                c.sim.add(count=7)
                c.sim.finish(count=3)
                other.add(count=4)
                other.finish(count=2)
            for p in (pa, pb):
                h.terminate(p)
            c.expect_rc(c.wait(pa, 15), 0, "instance acme")
            c.expect_rc(c.wait(pb, 15), 0, "instance globex")
            for name, sim in (("acme", c.sim), ("globex", other)):
                d = exact(c, name, sim)
                check(not d, "source %s differs:\n  %s" % (name, "\n  ".join(d)))
            srcs = c.scalar("select string_agg(distinct source, ',' order by source) "
                            "from vozagent.calls")
            check(srcs == "acme,globex", "sources in the mirror: %s" % srcs)
        finally:
            other.stop()


if __name__ == "__main__":
    h.main([("two instances, two sources, one database", two_instances)])
