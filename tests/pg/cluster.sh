#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for the tests and the demo.
#
#   cluster.sh [--durable] start ENVFILE [DIR]
#   cluster.sh stop ENVFILE
#   cluster.sh status ENVFILE
#
# start: initdb (once) into DIR/data and start the server, listening only on a
# unix socket in DIR (no TCP, so the fixed port cannot clash), user vozagent,
# trust auth. DIR defaults to a new /tmp/vozagent-pg.XXXXXX; as root the
# cluster belongs to the postgres user (initdb refuses root), and when that user
# cannot reach DIR a temp dir is used instead. Writes ENVFILE:
#   PGHOST=<socket dir> PGPORT=<port> PGUSER=vozagent PGDATABASE=postgres
#   VOZAGENT_PG_DATADIR=<data dir, for pg_ctl -D>
# Starting a running cluster is a no-op; a stopped one is started again.
# Tests run with fsync=off; --durable keeps it on (the demo).
# stop: stop the server, remove ENVFILE, and remove DIR if start made it.
# status: exit 0 when the ENVFILE's server is running, 3 when not.
# VOZAGENT_PG_PORT overrides the port (default 54329).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

PORT=${VOZAGENT_PG_PORT:-54329}
DBUSER=vozagent
TMP_MARKER=.vozagent-sync-tempdir # in DIR: start created DIR, stop removes it

usage() {
	echo "usage: $0 [--durable] start ENVFILE [DIR] | stop ENVFILE | status ENVFILE" >&2
	exit 64
}

abspath() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}

pg_ctl() { run_as_pg_user "$VOZ_PG_BINDIR/pg_ctl" "$@"; }

is_running() { [ -f "$1/PG_VERSION" ] && pg_ctl status -D "$1" >/dev/null 2>&1; }

# The postgres account must be able to enter and write DIR (all its parents
# traversable): /root/... is not.
pg_user_can_use() {
	if is_root; then
		runuser -u "$VOZ_PG_OSUSER" -- test -d "$1" -a -w "$1" -a -x "$1"
	else
		test -d "$1" -a -w "$1" -a -x "$1"
	fi
}

make_temp_dir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-pg.XXXXXX") || die "mktemp failed"
	# A temp dir under a private TMPDIR may be unusable by postgres: use /tmp.
	if is_root && ! { chown "$VOZ_PG_OSUSER:" "$d" && pg_user_can_use "$d"; }; then
		rm -rf "$d"
		d=$(mktemp -d /tmp/vozagent-pg.XXXXXX) || die "mktemp failed"
	fi
	chmod 755 "$d" # lets other users reach the socket
	touch "$d/$TMP_MARKER"
	is_root && chown -R "$VOZ_PG_OSUSER:" "$d"
	printf '%s\n' "$d"
}

# Pick the cluster directory for a start: DIR if usable, else a temp dir.
choose_dir() {
	local want=${1:-} created=
	if [ -z "$want" ]; then
		make_temp_dir
		return
	fi
	want=$(abspath "$want")
	if [ ! -d "$want" ]; then
		mkdir -p "$want" || die "cannot create $want"
		created=1
	fi
	if is_root; then
		chown "$VOZ_PG_OSUSER:" "$want"
		chmod 755 "$want"
	fi
	if pg_user_can_use "$want"; then
		printf '%s\n' "$want"
		return
	fi
	[ -n "$created" ] && rmdir "$want" 2>/dev/null
	warn "user '$VOZ_PG_OSUSER' cannot reach $want (a parent directory is closed to it);
         using a temporary directory instead"
	make_temp_dir
}

# A unix socket path is at most 107 bytes; "/.s.PGSQL.NNNNN" takes 15 of them.
socket_dir_for() {
	local dir=$1 d
	if [ ${#dir} -le 90 ]; then
		printf '%s\n' "$dir"
		return
	fi
	d=$(mktemp -d /tmp/vozagent-pgsock.XXXXXX) || die "mktemp failed"
	chmod 755 "$d"
	is_root && chown "$VOZ_PG_OSUSER:" "$d"
	note "cluster path is too long for a unix socket; socket in $d"
	printf '%s\n' "$d"
}

write_envfile() {
	local envfile=$1 sockdir=$2 datadir=$3 tmp
	mkdir -p "$(dirname "$envfile")"
	tmp=$envfile.tmp.$$
	printf '%s\n' \
		"PGHOST=$sockdir" \
		"PGPORT=$PORT" \
		"PGUSER=$DBUSER" \
		"PGDATABASE=postgres" \
		"VOZAGENT_PG_DATADIR=$datadir" >"$tmp"
	mv -f "$tmp" "$envfile"
}

cmd_start() {
	local durable=$1 envfile=$2 want=${3:-} dir='' data sockdir log
	pg_require_binaries
	envfile=$(abspath "$envfile")

	# Reuse what ENVFILE points at: running is a no-op, stopped is restarted.
	if [ -f "$envfile" ]; then
		VOZAGENT_PG_DATADIR=''
		read_envfile "$envfile"
		if [ -n "$VOZAGENT_PG_DATADIR" ] && is_running "$VOZAGENT_PG_DATADIR"; then
			step "postgres: already running ($VOZAGENT_PG_DATADIR)"
			return 0
		fi
		if [ -n "$VOZAGENT_PG_DATADIR" ] && [ -f "$VOZAGENT_PG_DATADIR/PG_VERSION" ]; then
			dir=$(dirname "$VOZAGENT_PG_DATADIR")
		fi
	fi
	if [ -z "$dir" ] && [ -n "$want" ] && [ -f "$(abspath "$want")/data/PG_VERSION" ]; then
		dir=$(abspath "$want")
	fi
	[ -n "$dir" ] || dir=$(choose_dir "$want")
	data=$dir/data
	log=$dir/postgresql.log

	if [ ! -f "$data/PG_VERSION" ]; then
		step "postgres: initdb $data"
		run_as_pg_user "$VOZ_PG_BINDIR/initdb" -D "$data" -U "$DBUSER" \
			--auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 || {
			cat "$dir/initdb.log" >&2
			die "initdb failed (log: $dir/initdb.log)"
		}
		printf '%s\n' "" "# vozagent-sync: settings for this private cluster, rewritten at each start" \
			"include_if_exists = 'vozagent-sync.conf'" >>"$data/postgresql.conf"
	elif is_running "$data"; then
		sockdir=$(sed -n 5p "$data/postmaster.pid")
		PORT=$(sed -n 4p "$data/postmaster.pid")
		write_envfile "$envfile" "$sockdir" "$data"
		step "postgres: already running ($data)"
		return 0
	fi

	sockdir=$(socket_dir_for "$dir")
	{
		echo "# written by tests/pg/cluster.sh at each start"
		echo "listen_addresses = ''"
		echo "port = $PORT"
		echo "unix_socket_directories = '$sockdir'"
		if [ "$durable" = 1 ]; then
			echo "fsync = on"
		else
			# a test cluster is thrown away: speed over crash safety
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
	} >"$data/vozagent-sync.conf"
	is_root && chown "$VOZ_PG_OSUSER:" "$data/vozagent-sync.conf"

	step "postgres: start (socket $sockdir, port $PORT, log $log)"
	if ! pg_ctl start -w -t 60 -D "$data" -l "$log" >/dev/null; then
		tail -n 30 "$log" >&2 || true
		die "postgres did not start (log: $log)"
	fi
	write_envfile "$envfile" "$sockdir" "$data"
	note "env: $envfile"
}

cmd_stop() {
	local envfile=$1 dir
	envfile=$(abspath "$envfile")
	if [ ! -f "$envfile" ]; then
		step "postgres: nothing to stop ($envfile does not exist)"
		return 0
	fi
	VOZAGENT_PG_DATADIR='' PGHOST=''
	read_envfile "$envfile"
	if [ -n "$VOZAGENT_PG_DATADIR" ] && is_running "$VOZAGENT_PG_DATADIR"; then
		step "postgres: stop ($VOZAGENT_PG_DATADIR)"
		pg_ctl stop -w -t 60 -m fast -D "$VOZAGENT_PG_DATADIR" >/dev/null ||
			die "pg_ctl stop failed for $VOZAGENT_PG_DATADIR"
	else
		step "postgres: not running ($VOZAGENT_PG_DATADIR)"
	fi
	dir=$(dirname "${VOZAGENT_PG_DATADIR:-/nonexistent/x}")
	if [ -f "$dir/$TMP_MARKER" ]; then
		note "removing $dir"
		rm -rf "$dir"
	fi
	case $PGHOST in
	/tmp/vozagent-pgsock.*) rm -rf "$PGHOST" ;;
	esac
	rm -f "$envfile"
}

cmd_status() {
	local envfile=$1
	envfile=$(abspath "$envfile")
	if [ ! -f "$envfile" ]; then
		echo "not running: $envfile does not exist"
		return 3
	fi
	VOZAGENT_PG_DATADIR=''
	read_envfile "$envfile"
	if [ -n "$VOZAGENT_PG_DATADIR" ] && is_running "$VOZAGENT_PG_DATADIR"; then
		echo "running: PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER datadir=$VOZAGENT_PG_DATADIR"
		return 0
	fi
	echo "not running: datadir=${VOZAGENT_PG_DATADIR:-?}"
	return 3
}

durable=0
while [ $# -gt 0 ]; do
	case $1 in
	--durable) durable=1 ;;
	-h | --help) usage ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 2 ] || usage
command=$1
shift
case $command in
start)
	[ $# -le 2 ] || usage
	cmd_start "$durable" "$@"
	;;
stop)
	[ $# -eq 1 ] || usage
	cmd_stop "$1"
	;;
status)
	[ $# -eq 1 ] || usage
	cmd_status "$1"
	;;
*) usage ;;
esac
