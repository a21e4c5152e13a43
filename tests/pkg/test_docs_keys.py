#!/usr/bin/env python3
"""Every key of src/config.c's table is documented: in the man page (as `.It Ic key`),
in the example configuration (a `key =` line, commented out or not) and in the README's
configuration table (as `key`). A key added to the code alone fails here."""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def main():
    config_c = read("src/config.c")
    table = re.search(r"static const struct key_def keys\[\] = \{(.*?)\n\};", config_c, re.S)
    if not table:
        print("FAIL: the key table of src/config.c not found (keys[] of struct key_def)")
        return 1
    keys = re.findall(r'\{\s*"([a-z0-9_]+)"\s*,\s*KEY_', table.group(1))
    if len(keys) < 10:
        print("FAIL: only %d keys read from src/config.c: %s" % (len(keys), keys))
        return 1
    man = read("docs/vozagent-sync.8")
    # `.It Ic key` alone or in a list of keys: `.It Ic status , Ic assistant_id , ...`
    man_keys = set()
    for line in man.splitlines():
        if line.startswith(".It Ic "):
            man_keys.update(re.findall(r"\bIc ([a-z0-9_]+)", line))
    conf = read("config/vozagent-sync.conf")
    readme = read("README.md")
    missing = []
    for k in keys:
        if k not in man_keys:
            missing.append("docs/vozagent-sync.8: no `.It Ic %s` entry under CONFIGURATION" % k)
        if not re.search(r"^#?\s*%s\s*=" % re.escape(k), conf, re.M):
            missing.append("config/vozagent-sync.conf: no `%s =` line (commented or not)" % k)
        if "`%s`" % k not in readme:
            missing.append("README.md: `%s` not in the configuration table" % k)
    for m in missing:
        print("FAIL: " + m)
    print("%d keys of src/config.c checked: %s" % (len(keys), " ".join(keys)))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
