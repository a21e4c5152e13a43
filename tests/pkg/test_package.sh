#!/bin/bash
# The install rules and the .deb, checked as an operator's Debian would see them.
#
#   test_package.sh SOURCE_DIR MAIN_BUILD_DIR SCRATCH_DIR
#
# 1. `cmake --install` of the main build tree into a DESTDIR: the default
#    (/usr/local) layout, no rebuild.
# 2. A scratch tree configured for /usr (kept between runs, so a re-run
#    rebuilds only what changed) builds the binary, `cpack -G DEB` packs it,
#    lintian (when installed) must report no error, and the .deb is unpacked
#    with dpkg -x into a throwaway root whose tree is checked: the binary runs,
#    the units are in systemd's unit directory and start /usr/bin/vozagent-sync,
#    the config is a conffile, the man page and copyright are there, and
#    Depends: names the libraries.
# Exits 77 (skipped) where dpkg-deb or cpack is missing: not a Debian system.
set -u

src=$1 main_build=$2 scratch=$3
failures=0
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
note() { printf '    %s\n' "$*"; }

for tool in dpkg-deb dpkg cpack; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found (the .deb is built and checked on Debian only)"
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vozagent-pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
version=$(sed -n 's/^project(vozagent-sync VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || { echo "FAIL: no version in $src/CMakeLists.txt"; exit 1; }

# Units the package must hold: what systemd/ has, templates under their final names.
units=()
for f in "$src"/systemd/*.service "$src"/systemd/*.timer "$src"/systemd/*.in; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .in)
	case " ${units[*]-} " in *" $n "*) ;; *) units+=("$n") ;; esac
done
[ ${#units[@]} -gt 0 ] || { echo "FAIL: no unit in $src/systemd"; exit 1; }

echo "==> cmake --install of $main_build (its own prefix) into a DESTDIR"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$main_build/CMakeCache.txt")
inst=$tmp/install
if ! DESTDIR=$inst cmake --install "$main_build" >"$tmp/install.log" 2>&1; then
	cat "$tmp/install.log"
	fail "cmake --install failed"
else
	for f in "$prefix/bin/vozagent-sync" "$prefix/share/man/man8/vozagent-sync.8.gz" \
	    "$prefix/share/doc/vozagent-sync/README.md" "$prefix/share/doc/vozagent-sync/writer-role.sql"; do
		[ -e "$inst$f" ] || fail "cmake --install: $f missing"
	done
	# GNUInstallDirs: /usr/local/etc for /usr/local, /etc for /usr
	conf=$(find "$inst" -path '*/vozagent-sync/vozagent-sync.conf' | head -1)
	[ -n "$conf" ] || fail "cmake --install: no vozagent-sync/vozagent-sync.conf"
	for u in "${units[@]}"; do
		[ -n "$(find "$inst" -path "*/systemd/system/$u")" ] ||
			fail "cmake --install: unit $u not installed"
	done
	note "installed under $prefix: $(cd "$inst" && find . -type f | wc -l) files"
fi

echo "==> the .deb: a tree configured for /usr in $scratch"
mkdir -p "$scratch"
if ! cmake -S "$src" -B "$scratch" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release \
    >"$tmp/configure.log" 2>&1 ||
   ! cmake --build "$scratch" --target vozagent-sync vozagent_docs -j2 >"$tmp/build.log" 2>&1; then
	cat "$tmp/configure.log" "$tmp/build.log" | tail -40
	echo "FAIL: the /usr tree did not configure or build"
	exit 1
fi
rm -f "$scratch"/vozagent-sync_*.deb
if ! (cd "$scratch" && cpack -G DEB) >"$tmp/cpack.log" 2>&1; then
	cat "$tmp/cpack.log"
	echo "FAIL: cpack -G DEB failed"
	exit 1
fi
deb=$(ls "$scratch"/vozagent-sync_"$version"_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { cat "$tmp/cpack.log"; echo "FAIL: no vozagent-sync_${version}_*.deb"; exit 1; }
note "built $(basename "$deb")"

if command -v lintian >/dev/null 2>&1; then
	# errors fail; warnings are shown. Root is fine for a .deb file.
	lintian --allow-root --tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1
	sed 's/^/    lintian: /' "$tmp/lintian.log"
	if grep -q '^E: ' "$tmp/lintian.log"; then
		fail "lintian reports errors"
	fi
else
	note "lintian not installed: skipped"
fi

depends=$(dpkg-deb -f "$deb" Depends)
note "Depends: $depends"
for lib in libc6 libcurl4 libyajl2 libpq5 libuv1; do
	printf '%s\n' "$depends" | tr ',' '\n' | grep -Eq "^ *$lib( |$)" ||
		fail "Depends: does not name $lib"
done
for field in Package:vozagent-sync "Version:$version" Section:net Maintainer: Description:; do
	value=$(dpkg-deb -f "$deb" "${field%%:*}")
	[ -n "$value" ] || fail "control: no ${field%%:*} field"
	[ -z "${field#*:}" ] || [ "$value" = "${field#*:}" ] ||
		fail "control: ${field%%:*} is '$value', expected '${field#*:}'"
done

dpkg-deb -e "$deb" "$tmp/control"
if [ "$(cat "$tmp/control/conffiles" 2>/dev/null)" != /etc/vozagent-sync/vozagent-sync.conf ]; then
	fail "conffiles is not exactly /etc/vozagent-sync/vozagent-sync.conf: $(cat "$tmp/control/conffiles" 2>&1)"
fi
# installed, not enabled: no maintainer script may enable or start a unit
if grep -Eqs 'systemctl +(enable|start|restart)|deb-systemd-helper +enable' "$tmp"/control/*inst "$tmp"/control/*rm; then
	fail "a maintainer script enables or starts a unit"
fi

root=$tmp/root
dpkg -x "$deb" "$root"
bin=$root/usr/bin/vozagent-sync
if [ ! -x "$bin" ]; then
	fail "/usr/bin/vozagent-sync missing"
else
	out=$("$bin" --version 2>&1)
	[ "$out" = "vozagent-sync $version" ] || fail "/usr/bin/vozagent-sync --version says '$out'"
	if command -v readelf >/dev/null 2>&1 && readelf -S "$bin" | grep -q '\.debug_info\|\.symtab'; then
		fail "/usr/bin/vozagent-sync is not stripped"
	fi
fi
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
unitdir=${unitdir:-/usr/lib/systemd/system}
for u in "${units[@]}"; do
	f=$root$unitdir/$u
	if [ ! -f "$f" ]; then
		fail "unit $unitdir/$u missing"
		continue
	fi
	case $u in
	*.service)
		grep -q '^ExecStart=/usr/bin/vozagent-sync ' "$f" ||
			fail "$unitdir/$u does not start /usr/bin/vozagent-sync: $(grep '^ExecStart' "$f")"
		if grep -q '/usr/local' "$f"; then
			fail "$unitdir/$u still names /usr/local: $(grep -n /usr/local "$f" | head -3)"
		fi
		;;
	esac
done
[ -n "$(find "$root" -name '*.service' ! -path "*$unitdir/*")" ] &&
	fail "units outside $unitdir: $(find "$root" -name '*.service' ! -path "*$unitdir/*")"
cmp -s "$root/etc/vozagent-sync/vozagent-sync.conf" "$src/config/vozagent-sync.conf" ||
	fail "/etc/vozagent-sync/vozagent-sync.conf missing or not the example config"
man=$root/usr/share/man/man8/vozagent-sync.8.gz
if [ ! -f "$man" ] || ! gzip -dc "$man" | cmp -s - "$src/docs/vozagent-sync.8"; then
	fail "/usr/share/man/man8/vozagent-sync.8.gz missing or not docs/vozagent-sync.8"
fi
for f in copyright changelog.gz README.md writer-role.sql; do
	[ -f "$root/usr/share/doc/vozagent-sync/$f" ] || fail "/usr/share/doc/vozagent-sync/$f missing"
done
note "package tree: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"

if [ "$failures" -gt 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "ok: install tree and $(basename "$deb") checked"
