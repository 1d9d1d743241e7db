#!/bin/sh
# docs_check.sh: the documentation agrees with the program. Lints both man
# pages with mandoc (skipped when mandoc is not installed), checks that the
# example config is valid with `socks5d -t`, and that -t rejects a bad file
# with a FILE:LINE message and exit status 1, and that ARCHITECTURE.md's
# module table names exactly the project headers each module includes.
#
# usage: sh tests/docs_check.sh path/to/socks5d
# Prints one line per check and "N passed, M failed"; exits 1 on any failure.

if [ $# -ne 1 ]; then
	echo "usage: $0 path/to/socks5d" >&2
	exit 2
fi
bin=$1
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
# Paths below are relative to the repository root.
cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/docs_check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}

fail() {
	echo "FAIL $1"
	[ -s "$tmp/out" ] && sed 's/^/    /' "$tmp/out"
	failed=$((failed + 1))
}

if command -v mandoc >/dev/null 2>&1; then
	for page in man/socks5d.8 man/socks5d.conf.5; do
		if mandoc -Tlint -W warning "$page" >"$tmp/out" 2>&1; then
			pass "mandoc -Tlint $page"
		else
			fail "mandoc -Tlint $page"
		fi
	done
else
	echo "SKIP mandoc -Tlint: mandoc not installed"
fi

if [ ! -x "$bin" ]; then
	echo "FAIL $bin is not an executable"
	failed=$((failed + 1))
else
	if "$bin" -t -f socks5d.conf.example >"$tmp/out" 2>&1; then
		pass "socks5d -t -f socks5d.conf.example"
	else
		fail "socks5d -t -f socks5d.conf.example (exit $?)"
	fi

	printf 'log-level info\nbogus-directive 1\n' >"$tmp/bad.conf"
	"$bin" -t -f "$tmp/bad.conf" >"$tmp/out" 2>&1
	rc=$?
	if [ $rc -eq 1 ] && grep -F -q "$tmp/bad.conf:2: unknown directive 'bogus-directive'" "$tmp/out"; then
		pass "socks5d -t rejects a bad file with FILE:LINE and exit 1"
	else
		fail "socks5d -t rejects a bad file with FILE:LINE and exit 1 (exit $rc)"
	fi
fi

# ARCHITECTURE.md: "| `module` | job | a, b, c |" against the #include
# lines of src/MODULE.c and include/MODULE.h (conn: also conn_*.c and
# src/conn_private.h). A module's own header does not count; "none" is
# no other; "everything" is not checked.
includes_of() {
	for f in "src/$1.c" "include/$1.h" $([ "$1" = conn ] && echo src/conn_*.c src/conn_private.h); do
		[ -f "$f" ] && sed -n 's/^#include "\([a-z_]*\)\.h".*/\1/p' "$f"
	done | grep -vx "$1" | sort -u | tr '\n' ' '
}
sed -n 's/^| `\([a-z_]*\)` | .* | \([a-z_, ]*\) |$/\1 \2/p' ARCHITECTURE.md >"$tmp/layers"
: >"$tmp/out"
for c in src/*.c; do
	m=$(basename "$c" .c)
	case $m in conn_*) continue ;; esac
	line=$(grep "^$m " "$tmp/layers") || { echo "$m: not in the module table" >>"$tmp/out"; continue; }
	want=$(echo "$line" | cut -d' ' -f2- | tr -d ',' | tr ' ' '\n' | grep -vx -e '' -e none |
		sort -u | tr '\n' ' ')
	[ "$want" = "everything " ] && continue
	have=$(includes_of "$m")
	[ "$want" = "$have" ] || echo "$m: table says [$want], the code includes [$have]" >>"$tmp/out"
done
if [ -s "$tmp/out" ]; then
	fail "ARCHITECTURE.md module table matches the #include lines"
else
	pass "ARCHITECTURE.md module table matches the #include lines"
fi

# socks5d(8) lists every reason a UDP datagram is dropped for (the names
# of udpassoc's drop table, which label the metrics).
: >"$tmp/out"
for r in $(sed -n 's/^\t\[UDPASSOC_DROP_[A-Z_]*\] = "\([a-z_]*\)",$/\1/p' src/udpassoc.c); do
	grep -q "^\.It Cm $r\$" man/socks5d.8 || echo "drop reason $r is not in man/socks5d.8" >>"$tmp/out"
done
if [ -s "$tmp/out" ] || ! grep -q 'UDPASSOC_DROP_FRAG\] = "fragment"' src/udpassoc.c; then
	fail "socks5d(8) lists the UDP drop reasons"
else
	pass "socks5d(8) lists the UDP drop reasons"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
