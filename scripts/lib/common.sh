# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/demo and tests/pg/cluster.sh.
# Sourced, not run: it sets no shell options of its own and exits only via die.

VOZ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# PostgreSQL major version the project builds and tests against (Debian 12's).
VOZ_PG_VERSION=15
VOZ_PG_BINDIR=/usr/lib/postgresql/$VOZ_PG_VERSION/bin
# OS account that owns test clusters when we run as root (initdb refuses root).
# Debian's postgresql-common creates it.
VOZ_PG_OSUSER=postgres

# Everything the build, the tests and the demo need on a fresh Debian 12.
# The one list: add a package here and every script installs it.
VOZ_PACKAGES=(
	# C toolchain. gcc only recommends libc6-dev, and we install without
	# recommends. gcc-12 pulls libasan8/libubsan1 for the sanitizer build.
	gcc libc6-dev make cmake pkg-config
	# the libraries the daemon links
	libcurl4-openssl-dev libyajl-dev libuv1-dev libpq-dev
	# throwaway clusters (initdb, pg_ctl) and psql for tests and the demo
	"postgresql-$VOZ_PG_VERSION" "postgresql-client-$VOZ_PG_VERSION"
	# the API simulator (stdlib only); pgrep/pkill for tests; TLS roots
	python3 procps ca-certificates
	# fuzzing: clang-14 neither depends on nor recommends the runtime that holds
	# libFuzzer and its ASan, so both are named
	clang libclang-rt-14-dev
	# end-to-end tests under memcheck
	valgrind
	# systemd-analyze verify/security on the units (tests/units/check_units.sh)
	systemd
	# the man page's lint, and the .deb: cpack's Depends: (dpkg-shlibdeps, file), lintian
	mandoc lintian dpkg-dev file
)

step() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command with root rights: directly as root, else through sudo.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $*
       Run this script as root, or install sudo and give your user sudo rights."
	fi
}

pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Install the packages of VOZ_PACKAGES that are missing; apt-get update only
# when there is something to install, so a re-run touches nothing.
# VOZAGENT_SKIP_PACKAGES=1 skips this (for machines set up by other means).
ensure_packages() {
	if [ "${VOZAGENT_SKIP_PACKAGES:-}" = 1 ]; then
		step "packages: skipped (VOZAGENT_SKIP_PACKAGES=1)"
		return 0
	fi
	if ! command -v dpkg-query >/dev/null 2>&1; then
		die "this script installs its dependencies with apt on Debian 12, and dpkg-query is missing.
       Install the equivalents of: ${VOZ_PACKAGES[*]}
       then re-run with VOZAGENT_SKIP_PACKAGES=1."
	fi
	local p missing=()
	for p in "${VOZ_PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		step "packages: all present"
		return 0
	fi
	step "packages: installing ${missing[*]}"
	pg_prevent_main_cluster
	# Lock::Timeout: on a fresh machine apt-daily may hold the lock for a while.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		update -q || die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y -q --no-install-recommends "${missing[@]}" ||
		die "apt-get install failed for: ${missing[*]}"
}

# promtool checks what /metrics serves (e2e_metrics). Debian ships it only in
# the prometheus package, which would also install, enable and start a
# Prometheus server on this machine; so that package is downloaded, not
# installed, and only promtool is unpacked from it into build-tools/bin, which
# goes first on PATH. Without it e2e_metrics says so and checks the rest.
ensure_promtool() {
	local dir=$VOZ_ROOT/build-tools tmp
	if command -v promtool >/dev/null 2>&1; then
		return 0
	fi
	if [ -x "$dir/bin/promtool" ]; then
		export PATH="$dir/bin:$PATH"
		return 0
	fi
	if [ "${VOZAGENT_SKIP_PACKAGES:-}" = 1 ]; then
		return 0
	fi
	step "promtool: unpacking it from Debian's prometheus package (not installing it)"
	tmp=$(mktemp -d)
	# apt-get download needs the package lists; a fresh machine may have none
	if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
			update -q >/dev/null || true
	fi
	if { ls "$tmp"/prometheus_*.deb >/dev/null 2>&1 ||
		(cd "$tmp" && apt-get download -q prometheus >/dev/null); } &&
		dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" &&
		mkdir -p "$dir/bin" && cp "$tmp/root/usr/bin/promtool" "$dir/bin/"; then
		export PATH="$dir/bin:$PATH"
	else
		warn "cannot get promtool from Debian's prometheus package: e2e_metrics will not run it"
	fi
	rm -rf "$tmp"
}

# Installing postgresql-NN on Debian creates and starts a "main" cluster on
# port 5432. We only ever run private clusters, so on a machine where
# postgresql-common is not installed yet (no one chose a policy) turn that off
# through the drop-in directory that createcluster.conf includes
# (documented in /etc/postgresql-common/createcluster.conf and
# pg_createcluster(1)). A machine that already has postgresql-common keeps
# whatever its administrator set.
pg_prevent_main_cluster() {
	pkg_installed postgresql-common && return 0
	local dir=/etc/postgresql-common/createcluster.d
	local conf=$dir/50-vozagent-sync.conf
	[ -e "$conf" ] && return 0
	note "writing $conf (create_main_cluster = false)"
	as_root mkdir -p "$dir"
	printf '%s\n' \
		'# Written by vozagent-sync scripts/lib/common.sh: its tests and demo run' \
		'# private clusters, so installing a server package creates no "main" one.' \
		'# Delete this file to get Debian'\''s default back.' \
		'create_main_cluster = false' |
		as_root tee "$conf" >/dev/null
}

pg_require_binaries() {
	if [ ! -x "$VOZ_PG_BINDIR/initdb" ] || [ ! -x "$VOZ_PG_BINDIR/pg_ctl" ]; then
		die "PostgreSQL $VOZ_PG_VERSION server binaries not found in $VOZ_PG_BINDIR
       Install postgresql-$VOZ_PG_VERSION (./scripts/test or ./scripts/demo do it)."
	fi
	if is_root; then
		id -u "$VOZ_PG_OSUSER" >/dev/null 2>&1 ||
			die "running as root needs the '$VOZ_PG_OSUSER' user to own the cluster (initdb refuses root),
       and it does not exist; postgresql-common creates it."
	fi
}

# Run a PostgreSQL server tool: as root through the postgres account (initdb
# and pg_ctl refuse root), otherwise as ourselves. From / so that a cwd the
# postgres user cannot enter (/root) causes no warnings; paths must be absolute.
run_as_pg_user() {
	if is_root; then
		(cd / && runuser -u "$VOZ_PG_OSUSER" -- "$@")
	else
		(cd / && "$@")
	fi
}

# Configure (cheap when nothing changed) and build one tree.
# build_tree DIR BUILD_TYPE [extra cmake args...]
build_tree() {
	local dir=$1 type=$2
	shift 2
	step "build $dir ($type${*:+ $*})"
	cmake -S "$VOZ_ROOT" -B "$VOZ_ROOT/$dir" -DCMAKE_BUILD_TYPE="$type" "$@" &&
		cmake --build "$VOZ_ROOT/$dir" -j"${VOZAGENT_JOBS:-2}"
}

build_main() { build_tree build RelWithDebInfo; }
build_asan() { build_tree build-asan Debug -DVOZAGENT_SANITIZE=ON; }
build_fuzz() { build_tree build-fuzz RelWithDebInfo -DCMAKE_C_COMPILER=clang -DVOZAGENT_FUZZ=ON; }

# Read KEY=VALUE lines (as cluster.sh writes them) into shell variables.
# Not `source`: a value may hold spaces.
read_envfile() {
	local key value
	while IFS='=' read -r key value; do
		case $key in
		PGHOST | PGPORT | PGUSER | PGDATABASE | VOZAGENT_PG_DATADIR)
			printf -v "$key" '%s' "$value"
			;;
		esac
	done <"$1"
}
