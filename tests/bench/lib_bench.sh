# shellcheck shell=bash
# lib_bench.sh: the private PostgreSQL and the small helpers the bench scripts
# share (bench_fast.sh, bench_dashboards.sh). Sourced, not run, after
# scripts/lib/common.sh; the caller sets REPO.

# Messages name the script that failed: bench_fast: ...
die() {
	printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2
	exit 1
}
note() { printf '%s\n' "$*" >&2; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

CLUSTER=$REPO/tests/pg/cluster.sh

# bench_pg_start WORK PORT: a private cluster with fsync on (tests/pg/cluster.sh
# --durable, unix socket, autovacuum off so that background work does not land
# in one run and not another). Exports its PG* settings; sets PSQL (a psql
# command line that stops at the first error) and PG_VERSION.
bench_pg_start() {
	note "==> PostgreSQL: private cluster on port $2, fsync on"
	mkdir -p "$1/log"
	VOZAGENT_PG_PORT=$2 bash "$CLUSTER" --durable start "$1/pg.env" >"$1/log/cluster.log" 2>&1 ||
		{ cat "$1/log/cluster.log" >&2; die "cluster.sh start failed"; }
	set -a
	# shellcheck disable=SC1091
	. "$1/pg.env"
	set +a
	export PGDATABASE=postgres PGOPTIONS="-c client_min_messages=warning"
	PSQL=(psql -X -q -v ON_ERROR_STOP=1)
	"${PSQL[@]}" -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
	# shellcheck disable=SC2034 # for the callers' headers
	PG_VERSION=$("${PSQL[@]}" -Atc "SHOW server_version")
	[ "$("${PSQL[@]}" -Atc "SHOW fsync")" = on ] || die "the cluster runs with fsync off"
}

# bench_pg_stop WORK PORT: stops the cluster bench_pg_start started (if any)
bench_pg_stop() {
	VOZAGENT_PG_PORT=$2 bash "$CLUSTER" stop "$1/pg.env" >/dev/null 2>&1 || true
}

# shellcheck disable=SC2153 # PGHOST, PGPORT, PGUSER come from pg.env
db_url() { printf 'host=%s port=%s user=%s dbname=%s' "$PGHOST" "$PGPORT" "$PGUSER" "$1"; }
fresh_db() { "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
count_rows() { "${PSQL[@]}" -d "$1" -Atc "SELECT count(*) FROM $2"; }
now_us() { echo "${EPOCHREALTIME/./}"; }

# The machine's load, as the write-ups quote it: "1-min 5-min 15-min"
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
