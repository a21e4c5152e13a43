#!/usr/bin/env bash
# bench_dashboards.sh: each BI view's typical dashboard query on a mirror of
# N calls (1,000,000 by default). Not a test: it measures and prints, and
# asserts nothing about speed (see BENCHMARKS.md).
#
#   tests/bench/bench_dashboards.sh [--calls N] [--days D] [--tz ZONE] [--reps K]
#                                   [--plans DIR] [--no-build] [--keep-running]
#                                   [--reuse ENVFILE]
#
# It builds vozagent-sync in build-bench/ (as bench_fast.sh does), starts a
# private PostgreSQL with fsync on (port $VOZAGENT_PG_PORT or 54369), migrates
# a new database "dash" with the daemon, loads N calls spanning D days (395)
# in the report zone ZONE (Europe/Madrid) with tests/bench/dashboards_load.sql
# (the triggers keep the rollup; see that file for the mix), runs VACUUM
# ANALYZE (a mirror that autovacuum keeps), and then, after one untimed
# warm-up pass, K rounds (7) of every query of tests/bench/dashboards_queries.sql
# (order reversed every other round), each query twice per round in one psql
# session per round: EXPLAIN (ANALYZE, BUFFERS) for the planning and execution
# times and the plan, then the query itself under \timing (psql's wall time:
# planning, execution and sending the rows). Prints a Markdown table of
# medians [min..max] and writes each query's plan of its median round to DIR
# (default: the temp dir, kept only with --keep-running).
#
# --keep-running leaves the cluster up and prints its ENVFILE; --reuse ENVFILE
# times the queries on that cluster's "dash" database without loading again.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$REPO/build-bench

CALLS=1000000
DAYS=395
TZONE=Europe/Madrid
REPS=7
PLANS=
BUILD_IT=1
KEEP_RUNNING=0
REUSE=
PG_PORT=${VOZAGENT_PG_PORT:-54369}

# shellcheck source=scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=tests/bench/lib_bench.sh
. "$HERE/lib_bench.sh"

usage() { # exit-status
	sed -n '6,8p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
	exit "$1"
}

while [ $# -gt 0 ]; do
	case $1 in
	--calls) CALLS=${2:-}; shift ;;
	--days) DAYS=${2:-}; shift ;;
	--tz) TZONE=${2:-}; shift ;;
	--reps) REPS=${2:-}; shift ;;
	--plans) PLANS=${2:-}; shift ;;
	--no-build) BUILD_IT=0 ;;
	--keep-running) KEEP_RUNNING=1 ;;
	--reuse) REUSE=${2:-}; shift ;;
	-h | --help) usage 0 ;;
	*) usage 64 ;;
	esac
	shift
done
is_count "$CALLS" || die "--calls must be a positive integer"
is_count "$DAYS" || die "--days must be a positive integer"
is_count "$REPS" || die "--reps must be a positive integer"
[[ $TZONE =~ ^[A-Za-z0-9_/+-]+$ ]] || die "--tz must be an IANA zone name, e.g. Europe/Madrid"
[ -z "$REUSE" ] || [ -f "$REUSE" ] || die "--reuse: no file $REUSE"
for tool in psql python3; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

while read -r v; do unset "$v"; done < <(compgen -e | grep '^VOZAGENT_' || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-bench-dash.XXXXXX")
mkdir -p "$WORK/log"
[ -n "$PLANS" ] || PLANS=$WORK/plans
mkdir -p "$PLANS"
cleanup() {
	if [ -n "$REUSE" ]; then
		rm -rf "$WORK"
	elif [ "$KEEP_RUNNING" = 1 ]; then
		note "the cluster is still running: . $WORK/pg.env; psql -d dash"
		note "stop it with: VOZAGENT_PG_PORT=$PG_PORT bash $REPO/tests/pg/cluster.sh stop $WORK/pg.env"
	else
		bench_pg_stop "$WORK" "$PG_PORT"
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(now_us)
LOAD_BEFORE=$(load_avg)
if [ -n "$REUSE" ]; then
	set -a
	# shellcheck disable=SC1090
	. "$REUSE"
	set +a
	export PGDATABASE=postgres PGOPTIONS="-c client_min_messages=warning"
	PSQL=(psql -X -q -v ON_ERROR_STOP=1)
	PG_VERSION=$("${PSQL[@]}" -Atc "SHOW server_version")
	LOAD_S=-
else
	if [ "$BUILD_IT" = 1 ]; then
		note "==> release build in $BUILD"
		cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
		cmake --build "$BUILD" -j2 --target vozagent-sync >/dev/null
	fi
	[ -x "$BUILD/vozagent-sync" ] || die "no $BUILD/vozagent-sync (run without --no-build)"
	bench_pg_start "$WORK" "$PG_PORT"
	fresh_db dash
	note "==> migrating"
	env VOZAGENT_API_URL=http://127.0.0.1:9/v1 VOZAGENT_API_TOKEN=unused \
		"VOZAGENT_DATABASE_URL=$(db_url dash)" VOZAGENT_SOURCE=bench \
		"$BUILD/vozagent-sync" migrate >"$WORK/log/migrate.log" 2>&1 ||
		{ cat "$WORK/log/migrate.log" >&2; die "migrate failed"; }
	note "==> loading $CALLS calls over $DAYS days ($TZONE)"
	L0=$(now_us)
	"${PSQL[@]}" -d dash -v calls="$CALLS" -v days="$DAYS" -v tz="$TZONE" \
		-f "$HERE/dashboards_load.sql" >"$WORK/log/load.log" 2>&1 ||
		{ tail -n 30 "$WORK/log/load.log" >&2; die "the load failed"; }
	L1=$(now_us)
	note "==> VACUUM ANALYZE"
	"${PSQL[@]}" -d dash -c "VACUUM ANALYZE"
	L2=$(now_us)
	LOAD_S=$(awk -v a=$((L1 - L0)) -v b=$((L2 - L1)) 'BEGIN { printf "%.0f s (+ %.0f s VACUUM ANALYZE)", a / 1e6, b / 1e6 }')
fi

# What the mirror holds
SIZES=$("${PSQL[@]}" -d dash -At -F ' ' <<'SQL'
SELECT (SELECT count(*) FROM vozagent.calls),
       (SELECT count(*) FROM vozagent.calls WHERE deleted_at IS NOT NULL),
       (SELECT count(*) FROM vozagent.calls WHERE call_status = 'in-progress' AND deleted_at IS NULL),
       (SELECT count(*) FROM vozagent.calls_daily_rollup),
       (SELECT count(*) FROM vozagent.call_changes),
       (SELECT count(*) FROM vozagent.sync_runs),
       (SELECT min(call_started_at)::date || '..' || max(call_started_at)::date FROM vozagent.calls),
       pg_size_pretty(pg_database_size('dash'));
SQL
)
read -r N_CALLS N_DEL N_PROG N_ROLLUP N_CHANGES N_RUNS SPAN DBSIZE <<<"$SIZES"
# an assistant of middling volume, and the contact with the most calls
ASSISTANT=$("${PSQL[@]}" -d dash -Atc "SELECT assistant_id FROM vozagent.calls
	GROUP BY 1 ORDER BY count(*) DESC OFFSET 5 LIMIT 1")
CONTACT=$("${PSQL[@]}" -d dash -Atc "SELECT contact_id FROM vozagent.calls
	WHERE contact_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")

# ---- the rounds ----

# The queries, one file each, in the order of the file.
python3 - "$HERE/dashboards_queries.sql" "$WORK/q" <<'PY'
import os
import sys

src, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
names, cur, what = [], None, {}
for line in open(src):
    if line.startswith("-- name:"):
        cur = line.split(":", 1)[1].strip()
        names.append(cur)
        buf = []
        continue
    if cur is None:
        continue
    if line.startswith("-- what:"):
        what[cur] = line.split(":", 1)[1].strip()
        continue
    buf.append(line)
    if line.rstrip().endswith(";"):
        open(os.path.join(out, cur + ".sql"), "w").write("".join(buf))
        cur = None
with open(os.path.join(out, "index"), "w") as f:
    for n in names:
        f.write("%s\t%s\n" % (n, what.get(n, "")))
PY
mapfile -t QUERIES < <(cut -f1 "$WORK/q/index")

# round_script R: one psql script for round R (R = 0: the warm-up)
round_script() {
	local r=$1 q i
	local order=("${QUERIES[@]}")
	if [ $((r % 2)) = 0 ] && [ "$r" != 0 ]; then
		order=()
		for ((i = ${#QUERIES[@]} - 1; i >= 0; i--)); do order+=("${QUERIES[$i]}"); done
	fi
	printf '\\set source bench\n\\set assistant %s\n\\set contact %s\n\\timing on\n' "$ASSISTANT" "$CONTACT"
	for q in "${order[@]}"; do
		printf '\\echo @@ %s explain\n\\o %s/plan.%s.%s\nEXPLAIN (ANALYZE, BUFFERS)\n' "$q" "$WORK" "$q" "$r"
		cat "$WORK/q/$q.sql"
		printf '\\o /dev/null\n\\echo @@ %s query\n' "$q"
		cat "$WORK/q/$q.sql"
		printf '\\o\n'
	done
}

: >"$WORK/times.tsv"
for ((r = 0; r <= REPS; r++)); do
	if [ "$r" = 0 ]; then note "==> warm-up pass"; else note "==> round $r/$REPS"; fi
	round_script "$r" >"$WORK/round.$r.sql"
	"${PSQL[@]}" -d dash -f "$WORK/round.$r.sql" >"$WORK/round.$r.out" 2>"$WORK/log/round.$r.err" ||
		{ cat "$WORK/log/round.$r.err" >&2; die "round $r failed"; }
	[ "$r" = 0 ] && continue
	# "@@ name kind" then its "Time: x ms" line
	awk -v r="$r" '/^@@ / { q = $2; k = $3; next }
		/^Time: / { printf "%s\t%s\t%s\t%s\n", r, q, k, $2 }' "$WORK/round.$r.out" >>"$WORK/times.tsv"
done
T1=$(now_us)
LOAD_AFTER=$(load_avg)

echo
echo "bench_dashboards: $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
	"$(git -C "$REPO" diff --quiet 2>/dev/null || echo '(modified)'), PostgreSQL $PG_VERSION (fsync on)," \
	"$(nproc) CPUs, load $LOAD_BEFORE before, $LOAD_AFTER after; $REPS rounds after a warm-up, medians;" \
	"$(awk -v t=$((T1 - T0)) 'BEGIN { printf "%.0f", t / 1e6 }') s in all"
echo
echo "- mirror: $N_CALLS calls ($SPAN, report zone $TZONE; $N_DEL soft-deleted, $N_PROG live in progress)," \
	"$N_ROLLUP rollup rows, $N_CHANGES history rows, $N_RUNS runs; database $DBSIZE; load $LOAD_S"
echo "- assistant $ASSISTANT (6th by volume), contact $CONTACT (most calls)"
python3 - "$WORK" "$REPS" "$PLANS" <<'PY'
import re
import statistics
import sys

work, reps, plans = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
index = [l.rstrip("\n").split("\t") for l in open(work + "/q/index") if l.strip()]
times = [l.split("\t") for l in open(work + "/times.tsv") if l.strip()]


def plan_numbers(path):
    text = open(path).read()
    p = float(re.search(r"Planning Time: ([\d.]+) ms", text).group(1))
    e = float(re.search(r"Execution Time: ([\d.]+) ms", text).group(1))
    top = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", text)
    hit = read = 0
    m = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", text)
    if m:
        hit, read = int(m.group(1) or 0), int(m.group(2) or 0)
    return p, e, int(top.group(1)) if top else 0, hit, read, text


def span(xs, fmt="%.1f"):
    return (fmt + " [" + fmt + ".." + fmt + "]") % (med(xs), min(xs), max(xs))


print()
print("| query | what | rows | planning ms | execution ms | psql \\timing ms | buffers (shared hit/read, top node) |")
print("|---|---|---:|---:|---:|---:|---|")
for name, what in index:
    runs = [plan_numbers("%s/plan.%s.%d" % (work, name, r)) for r in range(1, reps + 1)]
    wall = [float(t[3]) for t in times if t[1] == name and t[2] == "query"]
    ex = [r[1] for r in runs]
    # keep the plan of the median round by execution time
    mid = sorted(range(reps), key=lambda i: ex[i])[reps // 2]
    with open("%s/%s.plan" % (plans, name), "w") as f:
        f.write(runs[mid][5])
    print("| `%s` | %s | %d | %s | %s | %s | %d/%d |" % (
        name, what, runs[mid][2], span([r[0] for r in runs], "%.2f"), span(ex), span(wall),
        runs[mid][3], runs[mid][4]))
print()
print("plans (the median round's) in %s" % plans)
PY
