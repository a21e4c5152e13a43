#!/usr/bin/env python3
"""No value is cut on its way into a request URL:
- a contact_id filter of 2,000 characters, many of them escaped (over 5,000 bytes in
  the URL), reaches the API whole, and the calls of that contact are mirrored;
- a filter too long for any URL (over 64 KiB escaped) fails with a message that says so,
  without sending a request;
- a call in progress whose contact_id is 600 bytes (1,500 escaped), started before the
  lookback window, that finishes is refreshed by a contact scan that asks for the whole
  contact_id, in both orders."""

import harness as h
from harness import check

# 2,000 characters: letters, and characters that need escaping (two bytes in UTF-8)
LONG_FILTER = ("contact-" + "ü+ &=%/" * 300)[:2000]
# 600 bytes, about half of them escaped
LONG_CONTACT = "ctc-" + "é" * 100 + ("a b+c&d=e/f?" * 40)[:392] + "-end"


def utf8_len(s):
    return len(s.encode("utf-8"))


def long_filter():
    with h.Case("long_filter", seed=91, calls=40) as c:
        check(len(LONG_FILTER) == 2000, "LONG_FILTER is %d characters" % len(LONG_FILTER))
        ids = [x["id"] for x in c.sim.calls()[5:12]]
        c.sim.update(ids=ids, set={"contact_id": LONG_FILTER})
        c.sim.clear_requests()
        r = c.run("backfill", env={"VOZAGENT_CONTACT_ID": LONG_FILTER})
        c.expect_rc(r, 0, "backfill with a 2,000-character contact_id filter")
        reqs = h.api_log_since(c.sim.requests())
        check(reqs, "no request was sent")
        for x in reqs:
            got = x["params"].get("contact_id")
            check(got == LONG_FILTER, "request %d carried contact_id of %d characters, not the "
                  "%d configured: %s" % (x["seq"], len(got or ""), len(LONG_FILTER),
                                         h.short(got or "(none)")))
        mirrored = sorted(c.q("select id from vozagent.calls where deleted_at is null")
                          .split())
        check(mirrored == sorted(ids), "mirrored %d calls, expected the %d of the contact: %s"
              % (len(mirrored), len(ids), mirrored[:5]))
        h.log("%d requests carried the whole %d-byte filter; %d calls mirrored"
              % (len(reqs), utf8_len(LONG_FILTER), len(mirrored)))

        # past any URL a server takes: a clear error, and nothing sent
        huge = "ü" * 12000               # 72,000 bytes escaped
        c.sim.clear_requests()
        r = c.run("once", env={"VOZAGENT_CONTACT_ID": huge})
        check(r.rc not in (0, "timeout"), "once with a 72 kB filter exited %s" % r.rc)
        check("longer than 65536 bytes" in r.err and "filters" in r.err,
              "the error does not say the URL is too long:\n%s" % h.tail(r.err, 5))
        check(not h.api_log_since(c.sim.requests()), "a request was sent with a cut URL")
        h.log("72 kB filter: %s" % h.tail(r.err, 1))


def long_contact(order):
    with h.Case("long_contact", order=order, seed=92, calls=120, page_size=10) as c:
        calls = c.sim.calls()
        newest = max(h.started_us(x) for x in calls)
        # the lookback window is 2h: a call 6h older than the newest is outside it
        old = [x for x in calls if newest - h.started_us(x) > 6 * 3600 * 10**6]
        check(len(old) >= 3, "the simulator made too few old calls (%d)" % len(old))
        target = old[len(old) // 2]["id"]
        c.sim.update(ids=[target], set={"call_status": "in-progress", "contact_id": LONG_CONTACT},
                     unset=["call_ended_at", "duration_seconds"])
        check(utf8_len(LONG_CONTACT) == 600, "LONG_CONTACT is %d bytes" % utf8_len(LONG_CONTACT))
        c.expect_rc(c.run("backfill"), 0, "backfill")
        c.assert_exact("after backfill")
        got = c.scalar("select call_status || ' ' || octet_length(contact_id) from "
                       "vozagent.calls where id = '%s'" % target)
        check(got == "in-progress 600", "the call is mirrored as %r" % got)

        # it finishes: the in-progress list no longer has it, the tail does not reach it
        c.sim.finish(ids=[target])
        c.sim.clear_requests()
        c.expect_rc(c.run("once"), 0, "once after the call finished")
        reqs = h.api_log_since(c.sim.requests())
        scans = [x for x in reqs if "contact_id" in x["params"]]
        check(scans, "no contact scan was made for the finished call (requests: %s)"
              % [x["params"] for x in reqs])
        for x in scans:
            got = x["params"]["contact_id"]
            check(got == LONG_CONTACT, "the contact scan asked for a contact_id of %d bytes, "
                  "not the call's 600: %s" % (utf8_len(got), h.short(got)))
        c.assert_exact("after once: the finished call is refreshed")
        h.log("%d contact scan request(s) carried the whole 600-byte contact_id" % len(scans))


if __name__ == "__main__":
    h.main([("a 2,000-character filter reaches the API whole", long_filter)] +
           h.both_orders(long_contact, "a 600-byte contact_id is refreshed"))
