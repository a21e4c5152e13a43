#!/bin/bash
# check_units.sh UNITDIR BINARY BINDIR: the configured units in UNITDIR, checked
# as systemd would load them.
#   - systemd-analyze verify on every unit (templates as an instance): it must
#     print nothing; an unknown key or a bad value is only a warning to it;
#   - systemd-analyze security --offline on every service: exposure <= 2.0;
#   - the settings the docs promise, each unit's own file read line by line:
#     every service LimitCORE=0, WatchdogSec=, User=vozagent-sync (-%i for templates); run units
#     ExecReload=; backfill units Type=notify (their watchdog arms at READY=1)
#     and `backfill --wait`; timers OnCalendar=, Persistent=true,
#     RandomizedDelaySec=.
# verify wants ExecStart's binary where the unit says (BINDIR), and the units a
# unit refers to (sysinit.target, timers.target...): both go into a throwaway
# root, with the system's own units, that --root= points at.
set -u

MAX_EXPOSURE=20   # --threshold counts tenths: 2.0

unitdir=$1 binary=$2 bindir=$3
fail() { echo "FAIL: $*"; failed=1; }
failed=0

if ! command -v systemd-analyze >/dev/null; then
	echo "FAIL: systemd-analyze not found (Debian package systemd)"
	exit 1
fi
sysunits=
for d in /usr/lib/systemd/system /lib/systemd/system; do
	[ -e "$d/sysinit.target" ] && { sysunits=$d; break; }
done
if [ -z "$sysunits" ]; then
	echo "FAIL: systemd's own units (sysinit.target) not found"
	exit 1
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-units.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root$bindir" "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/bin"
ln -s usr/bin "$root/bin"
cp -r "$sysunits" "$root/usr/lib/systemd/system"
cp "$binary" "$root$bindir/vozagent-sync"
cp "$(type -P kill)" "$root/usr/bin/kill"   # ExecReload=/bin/kill (procps)

units=()
for f in "$unitdir"/*.service "$unitdir"/*.timer; do
	[ -e "$f" ] || continue
	cp "$f" "$root/etc/systemd/system/"
	u=$(basename "$f")
	# a template is checked as what systemctl starts: an instance of it
	case $u in *@.*) u=${u/@./@acme.} ;; esac
	units+=("$u")
done
if [ ${#units[@]} -lt 6 ]; then
	echo "FAIL: expected 6 units in $unitdir, found: ${units[*]:-none}"
	exit 1
fi

# has FILE REGEX WHY: a line of FILE matches the extended REGEX, or fail saying WHY
has() {
	if grep -Eq "$2" "$1"; then
		echo "ok   $(basename "$1"): $2"
	else
		fail "$(basename "$1") has no line matching '$2' ($3)"
	fi
}
for f in "$unitdir"/*.service; do
	has "$f" '^LimitCORE=0$' "a core file would hold the API key"
	has "$f" '^WatchdogSec=[1-9]' "a hung process must be killed"
	case $(basename "$f") in
	*@.service)
		has "$f" '^User=vozagent-sync-%i$' "one user per instance: none reads another's key" ;;
	*)
		has "$f" '^User=vozagent-sync$' "the dynamic user the README has a role made for" ;;
	esac
	case $(basename "$f") in
	vozagent-sync-backfill*)
		has "$f" '^ExecStart=.* backfill --wait$' "the timer's backfill waits for the daemon"
		has "$f" '^Type=notify$' "a oneshot's watchdog never arms" ;;
	*)
		has "$f" '^ExecReload=' "systemctl reload" ;;
	esac
done
for f in "$unitdir"/*.timer; do
	has "$f" '^OnCalendar=.' "when it runs"
	has "$f" '^Persistent=true$' "a run missed while the machine was off is caught up"
	has "$f" '^RandomizedDelaySec=[1-9]' "servers must not hit the API at the same minute"
done

for u in "${units[@]}"; do
	out=$(systemd-analyze verify --root="$root" --man=no --generators=no "$u" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		fail "systemd-analyze verify $u (exit $rc):"
		printf '%s\n' "$out" | sed "s|$root||g; s/^/    /"
	else
		echo "ok   verify $u"
	fi
	case $u in *.service) ;; *) continue ;; esac
	out=$(systemd-analyze security --offline=yes --root="$root" --threshold=$MAX_EXPOSURE \
	    "$u" 2>&1)
	rc=$?
	level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ $rc -ne 0 ] || [ -z "$level" ]; then
		fail "systemd-analyze security $u: exposure ${level:-unknown}, above 2.0 (exit $rc)"
		printf '%s\n' "$out" | grep -E '^✗|Overall' | sed 's/^/    /' | head -40
	else
		echo "ok   security $u: exposure $level"
	fi
done
exit $failed
