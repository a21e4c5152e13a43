#!/usr/bin/env bash
# bench_backfill.sh: how long a backfill takes, next to what the simulator and
# PostgreSQL alone need for the same data. Not a test: it measures and prints,
# and asserts nothing about speed (see BENCHMARKS.md for how to read it).
#
#   tests/bench/bench_backfill.sh [--calls N] [--reps R] [--page-size P]
#                                 [--api-delay-ms MS] [--bin PATH] [--baseline PATH]
#                                 [--sim-args ARGS] [--durable] [--tsv FILE] [--keep]
#
# It starts its own PostgreSQL (tests/pg/cluster.sh, port $VOZAGENT_PG_PORT or
# 54349, autovacuum off) and two simulators (N calls and N/10 calls), does one
# untimed warm-up round, then R rounds. Each round runs, one after the other:
#
#   backfill      vozagent-sync backfill of N calls into a new, empty database
#   once          vozagent-sync once right after it: nothing has changed
#   curl          every request the warm-up backfill made (the simulator's log),
#                 made again in order by one curl (keep-alive), bodies to
#                 /dev/null: what the simulator alone costs
#   copy          the same rows loaded by psql \copy into vozagent.calls of a new
#                 migrated database, one transaction: PostgreSQL's bulk-load speed
#   direct        psql, one transaction per page, \copy straight into
#                 vozagent.calls: what committing page by page costs by itself
#   pages         psql replaying the daemon's write pattern with the same rows:
#                 per page BEGIN, \copy into the staging table, merge_stage(),
#                 two bookkeeping statements, COMMIT; then finish_backfill()
#                 when the schema has it (the replay follows the signatures of
#                 the schema's functions, and stops when they are new to it)
#   backfill_s    vozagent-sync backfill of N/10 calls into a new database
#
# and records, for each: wall time; the CPU time of the command itself (user+
# sys) and its peak RSS (GNU time if /usr/bin/time is GNU time, else sampled
# from /proc/PID/status VmHWM every 10 ms); the CPU time the simulator and the
# PostgreSQL cluster (postmaster, its live children, its reaped children) used
# meanwhile; and the API requests of the pass. The summary gives medians,
# [min..max], and ratios taken within each round, then their median.
#
# --baseline PATH also runs that binary's backfill and once in every round, next
# to --bin's (alternating which goes first), and reports their ratios: the way
# to measure a change. --api-delay-ms MS makes the simulators wait MS before
# each answer, as a distant API would (localhost answers in well under a
# millisecond). --sim-args passes options to both simulators; by default, when
# the simulator has them, "--in-progress-recent 200 --in-progress-stuck 10":
# only recent calls are in progress, as with a real call log (the simulator's
# own default, 10% of all calls in progress forever, makes every `once` re-list
# a tenth of the data; --sim-args "" measures that). --durable runs
# PostgreSQL with fsync on.
# Exit status 0 when every run succeeded and mirrored every call.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER=$REPO/tests/pg/cluster.sh
SIM=$REPO/tests/sim/vozagent_sim.py
TOKEN=bench-token

CALLS=20000
REPS=5
PAGE=100
BIN=${VOZAGENT_BIN:-$REPO/build/vozagent-sync}
BASE=
SIM_ARGS=-
DURABLE=
DELAY_MS=0
KEEP=0
TSV=
PG_PORT=${VOZAGENT_PG_PORT:-54349}

usage() { # exit-status
	sed -n '6,8p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
	exit "$1"
}

die() {
	printf 'bench_backfill: %s\n' "$*" >&2
	exit 1
}

note() { printf '%s\n' "$*" >&2; }

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

while [ $# -gt 0 ]; do
	case $1 in
	--calls) CALLS=${2:-}; shift ;;
	--reps) REPS=${2:-}; shift ;;
	--page-size) PAGE=${2:-}; shift ;;
	--bin) BIN=${2:-}; shift ;;
	--baseline) BASE=${2:-}; shift ;;
	--sim-args) SIM_ARGS=${2-}; shift ;;
	--api-delay-ms) DELAY_MS=${2:-}; shift ;;
	--tsv) TSV=${2:-}; shift ;;
	--durable) DURABLE=--durable ;;
	--keep) KEEP=1 ;;
	-h | --help) usage 0 ;;
	*) usage 64 ;;
	esac
	shift
done
if ! is_count "$CALLS" || [ "$CALLS" -lt 10 ]; then die "--calls must be an integer >= 10"; fi
if ! is_count "$REPS"; then die "--reps must be a positive integer"; fi
if ! is_count "$PAGE" || [ "$PAGE" -gt 100 ]; then die "--page-size must be 1..100"; fi
if [ "$DELAY_MS" != 0 ] && ! is_count "$DELAY_MS"; then die "--api-delay-ms must be an integer"; fi
[ -x "$BIN" ] || die "no vozagent-sync at $BIN (build it, or pass --bin / set VOZAGENT_BIN)"
[ -z "$BASE" ] || [ -x "$BASE" ] || die "no baseline binary at $BASE"
for tool in psql curl python3 ps; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
SMALL=$((CALLS / 10))

# Nothing from the caller's environment may reconfigure the daemon.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^VOZAGENT_' || true)

# Peak RSS: GNU time when present, else VmHWM sampled from /proc.
if [ "${BENCH_RSS:-}" != proc ] && /usr/bin/time --version 2>&1 | grep -q GNU; then
	RSS_METHOD="GNU time (/usr/bin/time -f %M)"
	GNU_TIME=1
else
	RSS_METHOD="VmHWM from /proc/PID/status, sampled every 10 ms"
	GNU_TIME=0
fi
CLK_TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-bench.XXXXXX")
SIM_PIDS=()
cleanup() {
	local pid
	for pid in "${SIM_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	VOZAGENT_PG_PORT=$PG_PORT bash "$CLUSTER" stop "$WORK/pg.env" >/dev/null 2>&1 || true
	if [ "$KEEP" = 1 ]; then
		note "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/log"

# ---- the cluster and the simulators ----

note "==> PostgreSQL: private cluster on port $PG_PORT${DURABLE:+ (durable: fsync on)}"
VOZAGENT_PG_PORT=$PG_PORT bash "$CLUSTER" $DURABLE start "$WORK/pg.env" >"$WORK/log/cluster.log" 2>&1 ||
	{ cat "$WORK/log/cluster.log" >&2; die "cluster.sh start failed"; }
set -a
# shellcheck disable=SC1091
. "$WORK/pg.env"
set +a
export PGDATABASE=postgres PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
# Background work must not land in one round and not another.
"${PSQL[@]}" -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
PM_PID=$(head -n 1 "$VOZAGENT_PG_DATADIR/postmaster.pid")
PG_VERSION=$("${PSQL[@]}" -Atc "SHOW server_version")
PG_FSYNC=$("${PSQL[@]}" -Atc "SHOW fsync")

if [ "$SIM_ARGS" = - ]; then
	SIM_ARGS=
	if python3 "$SIM" --help | grep -q -- --in-progress-recent; then
		SIM_ARGS="--in-progress-recent 200 --in-progress-stuck 10"
	fi
fi
read -r -a SIM_EXTRA <<<"$SIM_ARGS"

start_sim() { # name calls -> sets SIM_PID and SIM_URL
	local name=$1 n=$2 pid i
	python3 "$SIM" --quiet --token "$TOKEN" --seed 1 --calls "$n" "${SIM_EXTRA[@]}" \
		--port-file "$WORK/sim_$name.port" >"$WORK/log/sim_$name.log" 2>&1 &
	pid=$!
	SIM_PIDS+=("$pid")
	for ((i = 0; i < 1200; i++)); do
		[ -s "$WORK/sim_$name.port" ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/log/sim_$name.log" >&2; die "simulator $name died"; }
		sleep 0.1
	done
	[ -s "$WORK/sim_$name.port" ] || die "simulator $name did not start"
	SIM_PID=$pid
	SIM_URL=http://127.0.0.1:$(cat "$WORK/sim_$name.port")
}
note "==> simulators: $CALLS and $SMALL calls"
start_sim big "$CALLS"
BIG_PID=$SIM_PID BIG_URL=$SIM_URL
start_sim small "$SMALL"
SMALL_PID=$SIM_PID SMALL_URL=$SIM_URL
for url in "$BIG_URL" "$SMALL_URL"; do
	curl -sS --fail -X POST -d "{\"delay_ms\": $DELAY_MS}" "$url/_control/config" >/dev/null ||
		die "cannot configure the simulator at $url"
done

# ---- clocks and counters ----

now_us() { echo "${EPOCHREALTIME/./}"; }

# utime+stime (+ cutime+cstime with $2 = all) of a process, in ticks
proc_ticks() {
	local stat f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	read -r -a f <<<"${stat##*) }"
	if [ "${2:-}" = all ]; then
		echo $((f[11] + f[12] + f[13] + f[14]))
	else
		echo $((f[11] + f[12]))
	fi
}

pg_children() { ps -o pid= --ppid "$PM_PID" | tr -d ' ' | sort; }

# CPU of the whole cluster: the postmaster with the children it has reaped,
# plus the children alive now (background workers).
pg_ticks() {
	local t c
	t=$(proc_ticks "$PM_PID" all)
	for c in $(pg_children); do
		t=$((t + $(proc_ticks "$c")))
	done
	echo "$t"
}

# After a client disconnects its backend exits; wait until it is reaped, so
# its CPU time has moved into the postmaster's cutime.
pg_settle() {
	local i
	for ((i = 0; i < 400; i++)); do
		[ -z "$(comm -13 <(echo "$PG_BASE_CHILDREN") <(pg_children))" ] && return 0
		sleep 0.005
	done
	note "warning: a PostgreSQL child did not exit within 2s; its CPU time may be missed"
}

# run_measured LOGNAME CMD...: runs CMD; sets M_WALL_US, M_RSS_KIB, M_CPU_S
run_measured() {
	local logname=$1 t0 t1 rc=0 tf pid hwm cpu v u s
	shift
	tf=$WORK/time.out
	if [ "$GNU_TIME" = 1 ]; then
		t0=$(now_us)
		/usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$WORK/log/$logname.log" 2>&1 || rc=$?
		t1=$(now_us)
		read -r M_RSS_KIB u s <"$tf"
		M_CPU_S=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", u + s }')
	else
		t0=$(now_us)
		"$@" >"$WORK/log/$logname.log" 2>&1 &
		pid=$!
		hwm=0 cpu=0
		while kill -0 "$pid" 2>/dev/null; do
			v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
			[ -n "$v" ] && hwm=$v && cpu=$(proc_ticks "$pid")
			sleep 0.01
		done
		wait "$pid" || rc=$?
		t1=$(now_us)
		M_RSS_KIB=$hwm
		M_CPU_S=$(awk -v t="$cpu" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }')
	fi
	M_WALL_US=$((t1 - t0))
	if [ "$rc" != 0 ]; then
		tail -n 30 "$WORK/log/$logname.log" >&2
		die "$logname failed (exit $rc): $*"
	fi
}

# measure ROUND NAME SIM_PID REQUESTS_SQL_DB CMD...: one row of results
measure() {
	local round=$1 name=$2 simpid=$3 reqdb=$4 s0 s1 p0 p1 req=-
	shift 4
	PG_BASE_CHILDREN=$(pg_children)
	s0=$(proc_ticks "$simpid")
	p0=$(pg_ticks)
	run_measured "$name.r$round" "$@"
	pg_settle
	s1=$(proc_ticks "$simpid")
	p1=$(pg_ticks)
	if [ "$reqdb" != - ]; then
		req=$("${PSQL[@]}" -d "$reqdb" -Atc "SELECT requests FROM vozagent.sync_runs ORDER BY id DESC LIMIT 1")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" \
		"$(awk -v w="$M_WALL_US" 'BEGIN { printf "%.4f", w / 1e6 }')" "$M_RSS_KIB" "$M_CPU_S" \
		"$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
		"$(awk -v t=$((p1 - p0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
		"$req" >>"$WORK/results.tsv"
}

# ---- databases ----

# shellcheck disable=SC2153 # PGHOST, PGPORT, PGUSER come from pg.env
db_url() { printf 'host=%s port=%s user=%s dbname=%s' "$PGHOST" "$PGPORT" "$PGUSER" "$1"; }

fresh_db() {
	"${PSQL[@]}" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}

migrated_db() {
	fresh_db "$1"
	VOZAGENT_DATABASE_URL=$(db_url "$1") "$BIN" -c "$WORK/empty.conf" migrate \
		>"$WORK/log/migrate_$1.log" 2>&1 || { cat "$WORK/log/migrate_$1.log" >&2; die "migrate failed"; }
}

count_calls() { "${PSQL[@]}" -d "$1" -Atc "SELECT count(*) FROM vozagent.calls"; }

expect_calls() { # db n what
	local got
	got=$(count_calls "$1")
	[ "$got" = "$2" ] || die "$3: vozagent.calls holds $got rows, expected $2"
}

: >"$WORK/empty.conf"
# daemon DB API-BASE-URL COMMAND [BINARY]: sets DAEMON, the command line (an
# external command, for /usr/bin/time)
daemon() {
	DAEMON=(env "VOZAGENT_API_URL=$2/v1" "VOZAGENT_API_TOKEN=$TOKEN"
		"VOZAGENT_DATABASE_URL=$(db_url "$1")" "VOZAGENT_PAGE_SIZE=$PAGE"
		VOZAGENT_SOURCE=bench VOZAGENT_HTTP_TIMEOUT=60s "${4:-$BIN}" -c "$WORK/empty.conf" "$3")
}

# backfill_and_once ROUND SUFFIX DB BINARY: the two measured passes of a binary
backfill_and_once() {
	fresh_db "$3"
	daemon "$3" "$BIG_URL" backfill "$4"
	measure "$1" "backfill$2" "$BIG_PID" "$3" "${DAEMON[@]}"
	expect_calls "$3" "$CALLS" "backfill$2"
	daemon "$3" "$BIG_URL" once "$4"
	measure "$1" "once$2" "$BIG_PID" "$3" "${DAEMON[@]}"
	"${PSQL[@]}" -c "DROP DATABASE $3"
}

# ---- warm-up: the data the floors replay ----

note "==> warm-up round (untimed): backfill, export, page script"
fresh_db prep
curl -sS --fail -X POST -d '{}' "$BIG_URL/_control/requests/clear" >/dev/null
daemon prep "$BIG_URL" backfill
"${DAEMON[@]}" >"$WORK/log/prep.log" 2>&1 || { tail -n 30 "$WORK/log/prep.log" >&2; die "warm-up backfill failed"; }
expect_calls prep "$CALLS" "warm-up backfill"
# one line: psql meta-commands (\copy) end at the newline
COLS="id, contact_id, assistant_id, call_type, call_status, duration_seconds, call_started_at"
COLS+=", call_ended_at, appointment_booked, lead_qualification, call_intent, raw"
"${PSQL[@]}" -d prep -c "\\copy (SELECT $COLS, source FROM vozagent.calls ORDER BY call_started_at, id) TO '$WORK/calls.copy'"
"${PSQL[@]}" -d prep -c "\\copy (SELECT (row_number() OVER (ORDER BY call_started_at, id) - 1) % $PAGE, $COLS FROM vozagent.calls ORDER BY call_started_at, id) TO '$WORK/stage.copy'"
# The replay calls the schema's own SQL functions, as the daemon does: follow
# their signatures, and stop rather than replay something else when they change.
MERGE_ARGS=$("${PSQL[@]}" -d prep -Atc "SELECT string_agg(format_type(t, NULL), ',')
	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, unnest(p.proargtypes) t
	WHERE n.nspname = 'vozagent' AND p.proname = 'merge_stage' GROUP BY p.oid")
case $MERGE_ARGS in
text) MERGE_CALL="SELECT * FROM vozagent.merge_stage('bench');" ;;
text,boolean) MERGE_CALL="SELECT * FROM vozagent.merge_stage('bench', true);" ;; # backfill
*) die "vozagent.merge_stage($MERGE_ARGS) is new to this script: update its page replay" ;;
esac
FINISH_CALL=
if [ -n "$("${PSQL[@]}" -d prep -Atc "SELECT 1 FROM pg_proc p JOIN pg_namespace n
	ON n.oid = p.pronamespace WHERE n.nspname = 'vozagent' AND p.proname = 'finish_backfill'")" ]; then
	FINISH_CALL="SELECT vozagent.finish_backfill('bench');"
fi
mkdir -p "$WORK/pages" "$WORK/direct"
split -l "$PAGE" -d -a 6 "$WORK/stage.copy" "$WORK/pages/p"
split -l "$PAGE" -d -a 6 "$WORK/calls.copy" "$WORK/direct/d"
for f in "$WORK"/direct/d*; do
	printf 'BEGIN;\n\\copy vozagent.calls (%s, source) FROM '"'"'%s'"'"'\nCOMMIT;\n' "$COLS" "$f"
done >"$WORK/direct.sql"
{
	# the staging table and bookkeeping as src/store.c has them
	echo "SET TimeZone = 'UTC';"
	echo "CREATE TEMP TABLE calls_stage (seq integer NOT NULL, id text NOT NULL, contact_id text,"
	echo " assistant_id text, call_type text, call_status text, duration_seconds numeric,"
	echo " call_started_at timestamptz, call_ended_at timestamptz, appointment_booked boolean,"
	echo " lead_qualification text, call_intent text, raw jsonb NOT NULL) ON COMMIT DELETE ROWS;"
	echo "INSERT INTO vozagent.sync_runs (source, mode) VALUES ('bench', 'backfill');"
	k=0
	for f in "$WORK"/pages/p*; do
		k=$((k + 1))
		echo "BEGIN;"
		echo "\\copy pg_temp.calls_stage FROM '$f'"
		echo "$MERGE_CALL"
		echo "UPDATE vozagent.sync_runs SET requests = $k, pages = $k, records_seen = $((k * PAGE)) WHERE id = 1;"
		echo "INSERT INTO vozagent.sync_state (source, api_order, backfill_offset, backfill_run_id)"
		echo " VALUES ('bench', 'oldest_first', $((k * PAGE)), 1) ON CONFLICT (source) DO UPDATE"
		echo " SET backfill_offset = EXCLUDED.backfill_offset, updated_at = now();"
		echo "COMMIT;"
	done
	# the daemon's last commit: the empty page that ends the list
	[ -z "$FINISH_CALL" ] || printf 'BEGIN;\n%s\nCOMMIT;\n' "$FINISH_CALL"
} >"$WORK/pages.sql"
# the curl floor asks for exactly what the warm-up backfill asked for, in order
curl -sS --fail "$BIG_URL/_control/requests" | python3 -c '
import json, sys, urllib.parse
for r in json.load(sys.stdin)["requests"]:
    print("url = \"%s%s?%s\"\noutput = \"/dev/null\"" % (
        sys.argv[1], r["path"], urllib.parse.urlencode(r["params"])))
' "$BIG_URL" >"$WORK/curl.cfg" || die "cannot read the simulator's request log"
[ -s "$WORK/curl.cfg" ] || die "the simulator logged no request of the warm-up backfill"
CURL=(curl -sS --fail -H "Authorization: Bearer $TOKEN" -K "$WORK/curl.cfg")
"${CURL[@]}" || die "curl could not fetch the pages"
fresh_db preps
daemon preps "$SMALL_URL" backfill
"${DAEMON[@]}" >"$WORK/log/preps.log" 2>&1 || die "warm-up small backfill failed"
expect_calls preps "$SMALL" "warm-up small backfill"
"${PSQL[@]}" -c "DROP DATABASE prep" -c "DROP DATABASE preps"

# ---- the rounds ----

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(now_us)
: >"$WORK/results.tsv"
for ((r = 1; r <= REPS; r++)); do
	note "==> round $r/$REPS"
	if [ -n "$BASE" ] && [ $((r % 2)) = 0 ]; then
		backfill_and_once "$r" _base bb "$BASE"
	fi
	backfill_and_once "$r" "" bf "$BIN"
	if [ -n "$BASE" ] && [ $((r % 2)) = 1 ]; then
		backfill_and_once "$r" _base bb "$BASE"
	fi
	measure "$r" curl "$BIG_PID" - "${CURL[@]}"
	migrated_db cp
	measure "$r" copy "$BIG_PID" - "${PSQL[@]}" -d cp -c "\\copy vozagent.calls ($COLS, source) FROM '$WORK/calls.copy'"
	expect_calls cp "$CALLS" "psql \\copy"
	migrated_db dp
	measure "$r" direct "$BIG_PID" - "${PSQL[@]}" -d dp -o /dev/null -f "$WORK/direct.sql"
	expect_calls dp "$CALLS" "psql per-page \\copy"
	migrated_db pp
	measure "$r" pages "$BIG_PID" - "${PSQL[@]}" -d pp -o /dev/null -f "$WORK/pages.sql"
	expect_calls pp "$CALLS" "psql page script"
	fresh_db bfs
	daemon bfs "$SMALL_URL" backfill
	measure "$r" backfill_s "$SMALL_PID" bfs "${DAEMON[@]}"
	expect_calls bfs "$SMALL" "small backfill"
	"${PSQL[@]}" -c "DROP DATABASE cp" -c "DROP DATABASE dp" -c "DROP DATABASE pp" \
		-c "DROP DATABASE bfs"
done
T_END=$(now_us)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$TSV" ] && cp "$WORK/results.tsv" "$TSV"

# What the daemon's PostgreSQL backend does during one more backfill (untimed:
# the sampler takes CPU itself): pg_stat_activity every millisecond.
note "==> wait profile: one more backfill, sampled"
fresh_db bw
cat >"$WORK/sampler.sql" <<'SQL'
CREATE TEMP TABLE samples (what text);
DO $$
DECLARE
	w text;
	seen boolean := false;
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT CASE state
			WHEN 'active' THEN coalesce('statement waiting on ' || wait_event_type || ':'
			                            || wait_event, 'statement on CPU')
			WHEN 'idle in transaction' THEN 'in a transaction, waiting for the client'
			ELSE 'between transactions, waiting for the client' END
		  INTO w FROM pg_stat_activity
		 WHERE datname = 'bw' AND application_name = 'vozagent-sync' LIMIT 1;
		IF w IS NULL THEN
			EXIT WHEN seen OR clock_timestamp() - t0 > interval '10 min';
		ELSE
			seen := true;
			INSERT INTO samples VALUES (w);
		END IF;
		PERFORM pg_sleep(0.001);
	END LOOP;
END $$;
SELECT format('  %5s%%  %s', round(100.0 * count(*) / sum(count(*)) OVER (), 1), what)
  FROM samples GROUP BY what ORDER BY count(*) DESC;
SQL
"${PSQL[@]}" -At -f "$WORK/sampler.sql" >"$WORK/waits.txt" 2>"$WORK/log/sampler.log" &
SAMPLER=$!
daemon bw "$BIG_URL" backfill
"${DAEMON[@]}" >"$WORK/log/waits_backfill.log" 2>&1 || die "the sampled backfill failed"
wait "$SAMPLER" || { cat "$WORK/log/sampler.log" >&2; die "the wait sampler failed"; }
"${PSQL[@]}" -c "DROP DATABASE bw"

# ---- the report ----

CACHE=$(dirname "$BIN")/CMakeCache.txt
if [ -f "$CACHE" ]; then
	BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$CACHE")
	# CMakeLists.txt picks RelWithDebInfo when the cache leaves it empty
	BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo (the project default)}
fi
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cat <<EOF

vozagent-sync backfill benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')
  machine     $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, load average $LOAD_BEFORE before, $LOAD_AFTER after
  binary      $BIN (build type ${BUILD_TYPE:-unknown})
  baseline    ${BASE:-none}
  PostgreSQL  $PG_VERSION, fsync=$PG_FSYNC, autovacuum off, unix socket
  data        $CALLS calls (small run: $SMALL), page_size $PAGE, $REPS rounds, $(( (T_END - T_START) / 1000000 ))s
  simulator   ${SIM_ARGS:-(its defaults)}; ${DELAY_MS} ms delay before each answer
  peak RSS    $RSS_METHOD
EOF
python3 - "$WORK/results.tsv" "$CALLS" "$SMALL" "$(nproc)" "$DELAY_MS" "$LOAD_BEFORE $LOAD_AFTER" <<'PY'
import statistics as st
import sys

path, calls, small, NCPU, delay_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
load = max(float(x) for x in sys.argv[6].split()[::3])
rows = {}
for line in open(path):
    rnd, name, wall, rss, cpu, sim, pg, req = line.rstrip("\n").split("\t")
    rows.setdefault(name, {})[int(rnd)] = dict(
        wall=float(wall), rss=int(rss), cpu=float(cpu), sim=float(sim), pg=float(pg),
        req=None if req == "-" else int(req))
rounds = sorted(rows["backfill"])

def col(name, key):
    return [rows[name][r][key] for r in rounds]

def med(v):
    return st.median(v)

def spread(v, fmt):
    return "%s [%s..%s]" % (fmt % med(v), fmt % min(v), fmt % max(v))

if load > NCPU / 2:
    print("\nnote: the machine was busy (1-minute load average up to %.1f on %d CPUs): the"
          % (load, NCPU))
    print("wall times are noisy; the CPU columns and the CPU ratios are steadier.")

labels = [
    ("backfill", "backfill, %d calls, empty database" % calls, calls),
    ("backfill_s", "backfill, %d calls, empty database" % small, small),
    ("once", "once right after it, nothing changed", None),
    ("backfill_base", "baseline: backfill, %d calls" % calls, calls),
    ("once_base", "baseline: once right after it", None),
    ("curl", "floor: curl fetches the same pages", calls),
    ("copy", "floor: psql \\copy, one transaction", calls),
    ("direct", "floor: psql \\copy, a transaction a page", calls),
    ("pages", "floor: psql, daemon's per-page txns", calls),
]
print()
print("%-40s %-24s %9s %7s %6s %6s %9s %5s" % (
    "median of %d rounds [min..max]" % len(rounds), "wall s", "calls/s", "cmd CPU", "sim",
    "PG", "peak RSS", "reqs"))
print("%-40s %-24s %9s %7s %6s %6s %9s %5s" % ("", "", "", "s", "CPU s", "CPU s", "KiB", ""))
for key, label, n in labels:
    if key not in rows:
        continue
    w = col(key, "wall")
    req = col(key, "req")
    print("%-40s %-24s %9s %7.2f %6.2f %6.2f %9d %5s" % (
        label, spread(w, "%.3f"), "%.0f" % (n / med(w)) if n else "-",
        med(col(key, "cpu")), med(col(key, "sim")), med(col(key, "pg")),
        med(col(key, "rss")), "-" if req[0] is None else "%d" % med(req)))

def ratio(a, b, key="wall"):
    return [rows[a][r][key] / rows[b][r][key] if rows[b][r][key] else float("nan")
            for r in rounds]

def rline(label, v, unit="x"):
    print("  %-62s %6.2f%s  [%.2f..%.2f]" % (label, med(v), unit, min(v), max(v)))

print()
print("ratios, each taken within a round, median [min..max]")
rline("backfill / curl floor (the simulator alone)", ratio("backfill", "curl"))
rline("backfill / psql per-page floor (the daemon's SQL alone)", ratio("backfill", "pages"))
rline("backfill / (curl + per-page floors, one after the other)",
      [rows["backfill"][r]["wall"] / (rows["curl"][r]["wall"] + rows["pages"][r]["wall"])
       for r in rounds])
rline("backfill / psql \\copy floor (PostgreSQL bulk load)", ratio("backfill", "copy"))
rline("daemon's SQL / \\copy a txn a page (staging + merge)", ratio("pages", "direct"))
rline("\\copy a txn a page / one \\copy (a commit per page)", ratio("direct", "copy"))
rline("peak RSS, backfill of %d / of %d calls" % (calls, small),
      ratio("backfill", "backfill_s", "rss"))
rline("wall time, backfill of %d / of %d calls (10x the data)" % (calls, small),
      ratio("backfill", "backfill_s"))
rline("once / backfill, wall time", ratio("once", "backfill"))
if "backfill_base" in rows:
    rline("backfill, this binary / baseline: wall time", ratio("backfill", "backfill_base"))
    rline("backfill, this binary / baseline: CPU of all three processes",
          [sum(rows["backfill"][r][k] for k in ("cpu", "sim", "pg")) /
           sum(rows["backfill_base"][r][k] for k in ("cpu", "sim", "pg")) for r in rounds])
    rline("backfill, this binary / baseline: vozagent-sync CPU",
          ratio("backfill", "backfill_base", "cpu"))
    rline("backfill, this binary / baseline: PostgreSQL CPU",
          ratio("backfill", "backfill_base", "pg"))
    rline("backfill, this binary / baseline: peak RSS",
          ratio("backfill", "backfill_base", "rss"))
    rline("once, this binary / baseline: wall time", ratio("once", "once_base"))

b = {k: med(col("backfill", k)) for k in ("wall", "cpu", "sim", "pg")}
busy = b["cpu"] + b["sim"] + b["pg"]
print()
print("where a backfill's %.2fs go (median CPU seconds of each process):" % b["wall"])
print("  vozagent-sync %.2f (%.0f%%), simulator %.2f (%.0f%%), PostgreSQL %.2f (%.0f%%);"
      % (b["cpu"], 100 * b["cpu"] / b["wall"], b["sim"], 100 * b["sim"] / b["wall"],
         b["pg"], 100 * b["pg"] / b["wall"]))
print("  together %.2fs = %.0f%% of the wall time; the rest is waiting (latency, wakeups)."
      % (busy, 100 * busy / b["wall"]))
print("  With everything overlapped on %s CPUs the floor is about max(%.2f/%s, %.2f) = %.2fs."
      % (NCPU, busy, NCPU, max(b["cpu"], b["sim"], b["pg"]),
         max(busy / NCPU, b["cpu"], b["sim"], b["pg"])))
if delay_ms:
    reqs = med(col("backfill", "req"))
    print("  The API delay alone: %d requests x %d ms = %.2fs, spent waiting one answer at a"
          % (reqs, delay_ms, reqs * delay_ms / 1000.0))
    print("  time; only requests in flight together can hide it.")
PY
echo
echo "the daemon's PostgreSQL backend during one more backfill (pg_stat_activity"
echo "sampled every ms; shares of the samples):"
cat "$WORK/waits.txt"
