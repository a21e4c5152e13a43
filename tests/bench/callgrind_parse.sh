#!/usr/bin/env bash
# callgrind_parse.sh: instructions per page of each bench_parse pipeline.
#
#   tests/bench/callgrind_parse.sh [BENCH_PARSE] [bench_parse options...]
#
# Runs bench_parse --only yajl|parse|rows under valgrind --tool=callgrind,
# counting only inside run_pipeline (--toggle-collect), and prints the
# instructions per page and per byte, and the ratio to bare yajl. Instruction
# counts do not depend on the machine's load: on a shared machine they are the
# repeatable number (BENCHMARKS.md). BENCH_PARSE defaults to
# build/tests/bench/bench_parse; options after it go to bench_parse (e.g.
# --file PAGE.json).
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=$REPO/build/tests/bench/bench_parse
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	BENCH=$1
	shift
fi
ITERS=${ITERS:-20}
[ -x "$BENCH" ] || { echo "callgrind_parse: no bench_parse at $BENCH" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || { echo "callgrind_parse: valgrind is not installed" >&2; exit 1; }

bytes=$("$BENCH" "$@" --only yajl --iters 1 | sed -n 's/^page: [^,]*, \([0-9]*\) bytes.*/\1/p')
"$BENCH" "$@" --only yajl --iters 1 | head -n 2
declare -A ir
for p in yajl parse rows; do
	out=$(valgrind --tool=callgrind --toggle-collect=run_pipeline --callgrind-out-file=/dev/null \
		"$BENCH" "$@" --only "$p" --iters "$ITERS" 2>&1 >/dev/null)
	ir[$p]=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' <<<"$out")
	[ -n "${ir[$p]}" ] || { echo "$out" >&2; exit 1; }
done
printf '\n%-6s %14s %10s %12s   (valgrind --tool=callgrind, %d pages each)\n' \
	"" "instr./page" "instr./B" "vs yajl" "$ITERS"
for p in yajl parse rows; do
	awk -v p="$p" -v ir="${ir[$p]}" -v base="${ir[yajl]}" -v n="$ITERS" -v b="$bytes" \
		'BEGIN { printf "%-6s %14.0f %10.1f %11.2fx\n", p, ir / n, ir / n / b, ir / base }'
done
