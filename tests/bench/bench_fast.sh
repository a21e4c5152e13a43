#!/usr/bin/env bash
# bench_fast.sh: the daemon next to the script a user would write and next to
# PostgreSQL's own COPY, on the same calls served by a fast local API server.
# Not a test: it measures and prints, and asserts nothing about speed (see
# BENCHMARKS.md, "Fast pipeline").
#
#   tests/bench/bench_fast.sh [--calls N] [--latency-ms L] [--rate R] [--reps K]
#                             [--concurrency C] [--batch-rows B]
#                             [--order oldest_first|newest_first]
#                             [--scenarios all] [--bi] [--no-build] [--keep]
#
# It builds the release binaries in build-bench/ (vozagent-sync, fastapi,
# fastget), starts a private PostgreSQL with fsync on (tests/pg/cluster.sh, port
# $VOZAGENT_PG_PORT or 54359, autovacuum off) and tests/bench/fastapi with N
# generated calls (L ms of latency per answer, R requests/s then 429), then
# runs K rounds, alternating the order within a round, of:
#
#   backfill  vozagent-sync backfill into a new, empty database
#   resync    vozagent-sync backfill again right after it, nothing changed;
#             also counts the rows of vozagent.calls it wrote (pg_stat_user_tables
#             n_tup_ins + n_tup_upd, before and after)
#   once      vozagent-sync once on that full mirror, nothing new
#   script    tests/bench/naive_sync.py into an empty table (sequential
#             keep-alive paging, one execute_values upsert and commit per page)
#   copy      psql \copy of the same rows (typed columns + raw, fastapi
#             --dump-copy) into an empty table shaped like vozagent.calls, with
#             its primary key: PostgreSQL's own speed for this data
#   serve     (no latency, no rate limit) tests/bench/fastget: every page over
#             C keep-alive connections, bodies dropped: how fast the server
#             serves, next to how fast the daemon consumes
#
# and prints one Markdown table per scenario, of medians (ratios: taken within
# each round, then their median): time, records/s,
# ratio to COPY, speed-up over the script, peak RSS and CPU time (GNU time),
# the server's CPU time meanwhile (/proc), requests and 429s (the server's
# counters); with --rate also the share of the allowed rate used (successful
# requests / (time x R)) and the share answered 429. Below it: the server's
# pages/s (fastget) and its CPU per page, next to the daemon's pages/s.
# The first round also checks that the daemon stored exactly the rows of the
# COPY file (typed columns and raw), so the comparison is like for like.
#
# --concurrency C and --batch-rows B write "concurrency = C" and "batch_rows = B"
# into the daemon's config (only when given). --scenarios all runs the four
# scenarios of the issue one after the other: N=100000 and N=1000000 with no
# latency, N=20000 at 50 ms per request, N=20000 behind 25 requests/s.
#
# --bi measures what the BI layer (sql/007_bi.sql: the rollup, raw field
# statistics and change history, all kept by triggers on vozagent.calls) costs
# a backfill: each round then runs, alternating the order, the backfill with
# the BI triggers on (as shipped; followed by the resync and once as above),
# with them disabled (ALTER TABLE .. DISABLE TRIGGER, every trigger of
# vozagent.calls but 004's calls_count_*), and with "history = off" in the
# daemon's config when this tree has that key (else that run is skipped, and
# the table says so), and COPY; not the script nor the server. Every database
# is migrated before its timed backfill here, so no variant pays for 007's DDL.
# The resync also counts the rows it wrote to the BI tables.
# Exit status 0 when every run succeeded and mirrored every call.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$REPO/build-bench
KEY=bench-token

CALLS=100000
LATENCY=0
RATE=0
REPS=3
CONC=
BATCH=
ORDER=oldest_first
SCENARIOS=
BI=0
BUILD_IT=1
KEEP=0
PG_PORT=${VOZAGENT_PG_PORT:-54359}

# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=tests/bench/lib_bench.sh
. "$HERE/lib_bench.sh"

usage() { # exit-status
	sed -n '7,10p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
	exit "$1"
}

while [ $# -gt 0 ]; do
	case $1 in
	--calls) CALLS=${2:-}; shift ;;
	--latency-ms) LATENCY=${2:-}; shift ;;
	--rate) RATE=${2:-}; shift ;;
	--reps) REPS=${2:-}; shift ;;
	--concurrency) CONC=${2:-}; shift ;;
	--batch-rows) BATCH=${2:-}; shift ;;
	--order) ORDER=${2:-}; shift ;;
	--scenarios) SCENARIOS=${2:-}; shift ;;
	--bi) BI=1 ;;
	--no-build) BUILD_IT=0 ;;
	--keep) KEEP=1 ;;
	-h | --help) usage 0 ;;
	*) usage 64 ;;
	esac
	shift
done
is_count "$CALLS" || die "--calls must be a positive integer"
[ "$LATENCY" = 0 ] || is_count "$LATENCY" || die "--latency-ms must be a non-negative integer"
[ "$RATE" = 0 ] || is_count "$RATE" || die "--rate must be a non-negative integer"
is_count "$REPS" || die "--reps must be a positive integer"
[ -z "$CONC" ] || is_count "$CONC" || die "--concurrency must be a positive integer"
[ -z "${BATCH:-}" ] || is_count "$BATCH" || die "--batch-rows must be a positive integer"
case $ORDER in oldest_first | newest_first) ;; *) die "--order is oldest_first or newest_first" ;; esac
case $SCENARIOS in "" | all) ;; *) die "--scenarios takes only 'all'" ;; esac

# ---- what it needs ----

# GNU time for peak RSS, Debian's psycopg2 for the script: installed as the
# project's scripts install packages (apt, only when missing).
# shellcheck disable=SC2034 # read by ensure_packages
VOZ_PACKAGES=(time python3-psycopg2)
ensure_packages
/usr/bin/time --version 2>&1 | grep -q GNU || die "/usr/bin/time is not GNU time"
for tool in psql curl python3; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

if [ "$BUILD_IT" = 1 ]; then
	note "==> release build in $BUILD"
	cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$BUILD" -j2 --target vozagent-sync fastapi fastget >/dev/null
fi
BIN=$BUILD/vozagent-sync
FASTAPI=$BUILD/tests/bench/fastapi
FASTGET=$BUILD/tests/bench/fastget
for b in "$BIN" "$FASTAPI" "$FASTGET"; do
	[ -x "$b" ] || die "no $b (run without --no-build)"
done

# Nothing from the caller's environment may reconfigure the daemon.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^VOZAGENT_' || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-bench-fast.XXXXXX")
API_PID=
cleanup() {
	stop_api
	bench_pg_stop "$WORK" "$PG_PORT"
	if [ "$KEEP" = 1 ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/log"

bench_pg_start "$WORK" "$PG_PORT"

expect_rows() { # db table n what
	local got
	got=$(count_rows "$1" "$2")
	[ "$got" = "$3" ] || die "$4: $2 holds $got rows, expected $3"
}

# ---- the API server ----

stop_api() {
	[ -n "$API_PID" ] || return 0
	kill "$API_PID" 2>/dev/null || true
	wait "$API_PID" 2>/dev/null || true
	API_PID=
}

# start_api N L R: a fresh server with its COPY dump in $WORK/calls.copy; sets API_URL
start_api() {
	local i
	stop_api
	rm -f "$WORK/api.port"
	"$FASTAPI" --calls "$1" --latency-ms "$2" --rate "$3" --order "$ORDER" --key "$KEY" \
		--port 0 --port-file "$WORK/api.port" --dump-copy "$WORK/calls.copy" \
		>/dev/null 2>"$WORK/log/api.log" &
	API_PID=$!
	for ((i = 0; i < 6000; i++)); do
		[ -s "$WORK/api.port" ] && break
		kill -0 "$API_PID" 2>/dev/null || { cat "$WORK/log/api.log" >&2; die "fastapi died"; }
		sleep 0.05
	done
	[ -s "$WORK/api.port" ] || die "fastapi did not start"
	API_URL=http://127.0.0.1:$(cat "$WORK/api.port")
}

# "requests rate_limited" of the server so far
api_counters() {
	curl -sS --fail "$API_URL/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["requests"], s["rate_limited"])'
}

# ---- measuring ----

CLK_TCK=$(getconf CLK_TCK)
# the server's CPU time so far (utime + stime), in ticks
api_ticks() {
	local f
	read -r -a f <<<"$(sed 's/.*) //' "/proc/$API_PID/stat")"
	echo $((f[11] + f[12]))
}

# run_measured NAME CMD...: runs CMD under GNU time; sets M_WALL_S, M_RSS_KIB, M_CPU_S,
# M_REQ, M_429 (the server's counters' deltas), M_API_CPU_S (the server's CPU meanwhile)
run_measured() {
	local name=$1 t0 t1 rc=0 u s r0 l0 r1 l1 a0 a1
	shift
	read -r r0 l0 < <(api_counters)
	a0=$(api_ticks)
	t0=$(now_us)
	/usr/bin/time -f '%M %U %S' -o "$WORK/time.out" "$@" >"$WORK/log/$name.log" 2>&1 || rc=$?
	t1=$(now_us)
	if [ "$rc" != 0 ]; then
		tail -n 30 "$WORK/log/$name.log" >&2
		die "$name failed (exit $rc): $*"
	fi
	a1=$(api_ticks)
	read -r r1 l1 < <(api_counters)
	M_API_CPU_S=$(awk -v t=$((a1 - a0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
	read -r M_RSS_KIB u s <"$WORK/time.out"
	M_CPU_S=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
	M_WALL_S=$(awk -v w=$((t1 - t0)) 'BEGIN { printf "%.4f", w / 1e6 }')
	M_REQ=$((r1 - r0))
	M_429=$((l1 - l0))
}

# record SCENARIO ROUND NAME [ROWS_WRITTEN]
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$M_WALL_S" "$M_RSS_KIB" \
		"$M_CPU_S" "$M_REQ" "$M_429" "${4:--}" "$M_API_CPU_S" >>"$WORK/results.tsv"
}

# A backend's statistics reach pg_stat_user_tables when it exits: wait for it.
wait_backends_gone() { # db
	local i
	for ((i = 0; i < 500; i++)); do
		[ "$("${PSQL[@]}" -Atc "SELECT count(*) FROM pg_stat_activity
			WHERE datname = '$1' AND pid <> pg_backend_pid()")" = 0 ] && return 0
		sleep 0.01
	done
	die "a backend of database $1 did not exit"
}

calls_written() { # db: n_tup_ins + n_tup_upd of vozagent.calls so far
	"${PSQL[@]}" -d "$1" -Atc "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables
		WHERE schemaname = 'vozagent' AND relname = 'calls'"
}

printf 'page_size = 100\n' >"$WORK/daemon.conf"
[ -z "$CONC" ] || printf 'concurrency = %s\n' "$CONC" >>"$WORK/daemon.conf"
[ -z "${BATCH:-}" ] || printf 'batch_rows = %s\n' "$BATCH" >>"$WORK/daemon.conf"
# The history switch of the BI layer, when this tree's daemon has it.
HAS_HISTORY_KEY=0
if grep -q '{ "history",' "$REPO/src/config.c"; then
	HAS_HISTORY_KEY=1
	{ cat "$WORK/daemon.conf"; printf 'history = off\n'; } >"$WORK/daemon-nohist.conf"
fi
daemon() { # DB COMMAND [CONFIG]: sets DAEMON, the command line
	DAEMON=(env "VOZAGENT_API_URL=$API_URL/v1" "VOZAGENT_API_TOKEN=$KEY"
		"VOZAGENT_DATABASE_URL=$(db_url "$1")" VOZAGENT_SOURCE=bench
		VOZAGENT_HTTP_TIMEOUT=60s "$BIN" -c "${3:-$WORK/daemon.conf}" "$2")
}
migrate() { # DB [CONFIG]: the schema, untimed
	daemon "$1" migrate "${2:-}"
	"${DAEMON[@]}" >"$WORK/log/migrate.log" 2>&1 || { cat "$WORK/log/migrate.log" >&2; die "migrate failed"; }
}

# The BI layer's triggers: every user trigger of vozagent.calls but 004's counters.
bi_triggers() { # db
	"${PSQL[@]}" -d "$1" -Atc "SELECT tgname FROM pg_trigger
		WHERE tgrelid = 'vozagent.calls'::regclass AND NOT tgisinternal
		  AND tgname NOT LIKE 'calls\_count\_%' ORDER BY tgname"
}

# Rows written (inserted, updated, deleted) so far to vozagent.calls and to the BI tables.
bi_written() { # db
	"${PSQL[@]}" -d "$1" -Atc "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
		FROM pg_stat_user_tables WHERE schemaname = 'vozagent'
		 AND relname IN ('calls', 'calls_daily_rollup', 'call_changes', 'raw_field_stats')"
}

COLS="id, contact_id, assistant_id, call_type, call_status, duration_seconds, call_started_at"
COLS+=", call_ended_at, appointment_booked, lead_qualification, call_intent"
# vozagent.calls' shape, primary key only, for the COPY floor
TABLE_DDL="CREATE TABLE copy_calls (id text PRIMARY KEY, contact_id text, assistant_id text,
	call_type text, call_status text, duration_seconds numeric, call_started_at timestamptz,
	call_ended_at timestamptz, appointment_booked boolean, lead_qualification text,
	call_intent text, raw jsonb NOT NULL, source text NOT NULL DEFAULT 'copy',
	first_seen_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz)"

# The daemon's rows and the COPY file hold the same values, or the floor compares unlike things.
check_same_rows() { # db
	local diff
	diff=$("${PSQL[@]}" -d "$1" -At <<SQL
SET TimeZone = 'UTC';
CREATE TEMP TABLE d AS SELECT $COLS, raw FROM vozagent.calls WITH NO DATA;
\\copy d ($COLS, raw) FROM '$WORK/calls.copy'
SELECT (SELECT count(*) FROM (SELECT $COLS, raw FROM vozagent.calls
                              EXCEPT ALL SELECT $COLS, raw FROM d) a)
     + (SELECT count(*) FROM (SELECT $COLS, raw FROM d
                              EXCEPT ALL SELECT $COLS, raw FROM vozagent.calls) b);
SQL
)
	[ "$diff" = 0 ] || die "the daemon's rows differ from the COPY file's in $diff rows"
}

run_daemon() { # SCENARIO ROUND
	local w0 w1 b0 b1
	fresh_db bf
	[ "$BI" = 0 ] || migrate bf
	daemon bf backfill
	run_measured backfill "${DAEMON[@]}"
	record "$1" "$2" backfill
	expect_rows bf vozagent.calls "$N" backfill
	if [ "$2" = 1 ]; then check_same_rows bf; fi
	wait_backends_gone bf
	w0=$(calls_written bf)
	b0=$(bi_written bf)
	run_measured resync "${DAEMON[@]}"
	wait_backends_gone bf
	w1=$(calls_written bf)
	b1=$(bi_written bf)
	record "$1" "$2" resync $((w1 - w0))
	[ "$BI" = 0 ] || printf '%s\t%s\t%s\n' "$1" "$2" $((b1 - b0)) >>"$WORK/bi_resync.tsv"
	daemon bf once
	run_measured once "${DAEMON[@]}"
	record "$1" "$2" once
	"${PSQL[@]}" -c "DROP DATABASE bf"
}

# run_variant SCENARIO ROUND nobi|nohist: the backfill alone, BI triggers
# disabled or history off
run_variant() {
	local t conf=
	fresh_db bf
	if [ "$3" = nohist ]; then conf=$WORK/daemon-nohist.conf; fi
	migrate bf "$conf"
	if [ "$3" = nobi ]; then
		for t in $(bi_triggers bf); do
			"${PSQL[@]}" -d bf -c "ALTER TABLE vozagent.calls DISABLE TRIGGER $t"
		done
	fi
	daemon bf backfill "$conf"
	run_measured "backfill_$3" "${DAEMON[@]}"
	record "$1" "$2" "backfill_$3"
	expect_rows bf vozagent.calls "$N" "backfill_$3"
	wait_backends_gone bf
	"${PSQL[@]}" -c "DROP DATABASE bf"
}

run_script() { # SCENARIO ROUND
	fresh_db nv
	"${PSQL[@]}" -d nv -c "${TABLE_DDL/copy_calls/naive_calls}"
	run_measured script /usr/bin/python3 "$HERE/naive_sync.py" "$API_URL/v1" "$KEY" "$(db_url nv)"
	record "$1" "$2" script
	expect_rows nv naive_calls "$N" script
	"${PSQL[@]}" -c "DROP DATABASE nv"
}

run_copy() { # SCENARIO ROUND
	fresh_db cp
	"${PSQL[@]}" -d cp -c "$TABLE_DDL"
	run_measured copy "${PSQL[@]}" -d cp -c "\\copy copy_calls ($COLS, raw) FROM '$WORK/calls.copy'"
	record "$1" "$2" copy
	expect_rows cp copy_calls "$N" copy
	"${PSQL[@]}" -c "DROP DATABASE cp"
}

run_serve() { # SCENARIO ROUND
	local out a0 a1
	a0=$(api_ticks)
	out=$("$FASTGET" --url "$API_URL/v1" --key "$KEY" --calls "$N" --concurrency "${CONC:-8}") ||
		die "fastget failed"
	a1=$(api_ticks)
	printf '%s\t%s\tserve\t%s server_cpu_s=%s\n' "$1" "$2" "$out" \
		"$(awk -v t=$((a1 - a0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
		>>"$WORK/serve.tsv"
}

# scenario N L R: one table
scenario() {
	local name r limit="no rate limit"
	N=$1
	[ "$3" = 0 ] || limit="rate limit $3 requests/s"
	name="${BI_NAME:-}N=$1, latency $2 ms, $limit, concurrency ${CONC:-default}, batch_rows ${BATCH:-default}, $ORDER"
	note "==> $name: generating"
	start_api "$1" "$2" "$3"
	for ((r = 1; r <= REPS; r++)); do
		note "==> $name: round $r/$REPS"
		if [ "$BI" = 1 ]; then
			local v order=(bi nobi nohist copy)
			[ $((r % 2)) = 1 ] || order=(copy nohist nobi bi)
			for v in "${order[@]}"; do
				case $v in
				bi) run_daemon "$name" "$r" ;;
				nobi) run_variant "$name" "$r" nobi ;;
				nohist) [ "$HAS_HISTORY_KEY" = 0 ] || run_variant "$name" "$r" nohist ;;
				copy) run_copy "$name" "$r" ;;
				esac
			done
			continue
		fi
		if [ $((r % 2)) = 1 ]; then
			run_daemon "$name" "$r"
			run_script "$name" "$r"
			run_copy "$name" "$r"
		else
			run_copy "$name" "$r"
			run_script "$name" "$r"
			run_daemon "$name" "$r"
		fi
		if [ "$2" = 0 ] && [ "$3" = 0 ]; then run_serve "$name" "$r"; fi
	done
	stop_api
	printf '%s\t%s\t%s\t%s\n' "$name" "$1" "$2" "$3" >>"$WORK/scenarios.tsv"
}

: >"$WORK/results.tsv"
: >"$WORK/serve.tsv"
: >"$WORK/scenarios.tsv"
: >"$WORK/bi_resync.tsv"
[ "$BI" = 0 ] || BI_NAME="BI layer: "
T0=$(now_us)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$SCENARIOS" = all ]; then
	scenario 100000 0 0
	scenario 1000000 0 0
	scenario 20000 50 0
	scenario 20000 0 25
else
	scenario "$CALLS" "$LATENCY" "$RATE"
fi
T1=$(now_us)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the tables ----

echo
echo "bench_fast: $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
	"$(git -C "$REPO" diff --quiet 2>/dev/null || echo '(modified)'), PostgreSQL $PG_VERSION (fsync on)," \
	"$(nproc) CPUs, load $LOAD_BEFORE before, $LOAD_AFTER after; $REPS round(s), medians;" \
	"$(awk -v t=$((T1 - T0)) 'BEGIN { printf "%.0f", t / 1e6 }') s in all"
python3 - "$WORK/results.tsv" "$WORK/serve.tsv" "$WORK/scenarios.tsv" "$WORK/bi_resync.tsv" \
	"${CONC:-8}" "$BI" "$HAS_HISTORY_KEY" <<'PY'
import statistics
import sys

has_hist = sys.argv.pop() == "1"
bi = sys.argv.pop() == "1"
conc = sys.argv.pop()
res, serve, scen, bi_resync = ([l.rstrip("\n").split("\t") for l in open(p) if l.strip()]
                               for p in sys.argv[1:])
med = statistics.median


IDX = {"wall": 3, "rss": 4, "cpu": 5, "req": 6, "r429": 7, "rows": 8, "api": 9}


def col(name, runs, k):
    return [float(r[IDX[k]]) for r in runs if r[2] == name and r[IDX[k]] != "-"]


def ratio(runs, a, b):
    """median over the rounds of a's wall time / b's in the same round"""
    by = {(r[1], r[2]): float(r[IDX["wall"]]) for r in runs}
    return med([by[(rd, a)] / by[(rd, b)] for rd, name in by if name == a and (rd, b) in by])


for name, n, lat, rate in scen:
    n, rate = int(n), int(rate)
    runs = [r for r in res if r[0] == name]
    rounds = len({r[1] for r in runs})
    names = {r[2] for r in runs}
    w = {k: med(col(k, runs, "wall")) for k in names}
    print()
    print("### %s (%d round%s)" % (name, rounds, "" if rounds == 1 else "s"))
    print()
    hdr = ("| run | time s | records/s | / COPY time | speed-up over script | peak RSS MB | CPU s |"
           " server CPU s | requests | 429s |")
    extra = rate > 0
    if bi:
        hdr = hdr.replace(" speed-up over script |", " / no-BI backfill |")
    if extra:
        hdr += " rate used | answered 429 |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for k, label in (("backfill", "`vozagent-sync backfill`" + (", BI on" if bi else "")),
                     ("backfill_nohist", "`vozagent-sync backfill`, `history = off`"),
                     ("backfill_nobi", "`vozagent-sync backfill`, BI triggers disabled"),
                     ("resync", "full resync (`backfill` again, unchanged)"),
                     ("once", "`once`, nothing new"),
                     ("script", "naive_sync.py (execute_values per page)"),
                     ("copy", "`\\copy` of the same rows")):
        if k not in w:
            if bi and k == "backfill_nohist" and not has_hist:
                print("| " + label + " | not run: this tree has no `history` key |" + " - |" * 8)
            continue
        t = w[k]
        rss = med(col(k, runs, "rss")) / 1024
        req = col(k, runs, "req")
        lim = col(k, runs, "r429")
        rec = "%.0f" % (n / t) if k != "once" else "-"
        vs_copy = "%.2fx" % ratio(runs, k, "copy") if k != "once" else "-"
        if bi:
            speed = "%.2fx" % ratio(runs, k, "backfill_nobi") if k.startswith("backfill") or k == "resync" else "-"
        else:
            speed = "%.1fx" % ratio(runs, "script", k) if k not in ("once", "copy") else "-"
        cells = [label, "%.2f" % t, rec, vs_copy, speed, "%.1f" % rss,
                 "%.2f" % med(col(k, runs, "cpu")), "%.2f" % med(col(k, runs, "api")),
                 "%.0f" % med(req) if k != "copy" else "-",
                 "%.0f" % med(lim) if k != "copy" else "-"]
        if extra:
            if k in ("backfill", "resync", "script"):
                ok = [q - l for q, l in zip(req, lim)]
                cells += ["%.0f%%" % (100 * med(ok) / (t * rate)),
                          "%.1f%%" % (100 * med([l / q for q, l in zip(req, lim)]))]
            else:
                cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    rows = col("resync", runs, "rows")
    print()
    print("- full resync / first backfill: %.2fx; rows of vozagent.calls written by the resync: %s"
          % (ratio(runs, "resync", "backfill"), ", ".join("%d" % x for x in rows)))
    bw = [r[2] for r in bi_resync if r[0] == name]
    if bw:
        print("- rows written by the resync to vozagent.calls, calls_daily_rollup, call_changes and"
              " raw_field_stats together (n_tup_ins + n_tup_upd + n_tup_del): %s" % ", ".join(bw))
    sv = [dict(kv.split("=") for kv in r[3].split()) for r in serve if r[0] == name]
    if sv:
        pps = med([float(s["pages_per_s"]) for s in sv])
        mbs = med([float(s["MB_per_s"]) for s in sv])
        d_pps = med([(q - l) / t for q, l, t in zip(col("backfill", runs, "req"),
                                                    col("backfill", runs, "r429"),
                                                    col("backfill", runs, "wall"))])
        cap = med([float(s["pages"]) / max(float(s["server_cpu_s"]), 0.01) for s in sv])
        print("- the server serves %.0f pages/s to fastget (%.0f MB/s, %s connections; client and"
              " server share the CPUs), using %.0f us of CPU per page (%.0f pages per CPU-second);"
              " the daemon's backfill consumes %.0f pages/s: the server is %.1fx faster"
              " (%.0fx by its CPU)" % (pps, mbs, conc, 1e6 / cap, cap, d_pps, pps / d_pps,
                                       cap / d_pps))
    elif not bi:
        print("- server speed not measured (latency or rate limit: the server is slow on purpose)")
PY
