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

# What the code can log and serve is in socks5d(8) (issue 20): every end=
# reason of the session line (quoted, "reason", in the Logging section),
# every cmd= value (in that section) and every metric name (anywhere).
# Reasons come from: string literals assigned to ->end / client_end or
# passed to conn_fail in src/conn*.c; the relay's end names (conn_command.c
# ends[]); udpassoc_finish's reasons and the udpassoc_recv error reasons;
# policy_admission_str; and the status names of proto, proxyproto and the
# resolver that become end reasons ("ok", "need more", "admitted" and the
# "unknown" fallbacks never do); a parent's failures and answers (upstream's
# hs_fail, hs_cannot and hs_answer, conn_parent's own, and a SOCKS5
# parent's REP in words: proto's rep_names but "succeeded"). strerror() texts are covered by prose.
literals() { grep -o '"[^"]*"' | tr -d '"'; }
table_of() { # FILE FIRST-LINE-PATTERN: the literals from there to "};"
	sed -n "/$2/,/^};/p" "$1" | literals
}
{
	grep -h -e '->end = ' -e 'client_end = ' -e 'conn_fail(' src/conn*.c | literals
	grep -h 'ends\[\] = {' src/conn_command.c | literals
	grep -h 'udpassoc_finish(u, "' src/udpassoc.c | literals
	grep -h -A1 'udpassoc_recv(u, ' src/udpassoc.c | grep -v 'udpassoc_recv' | literals
	sed -n '/^policy_admission_str(/,/^}/p' src/policy.c | literals
	sed -n '/^resolver_status_str(/,/^}/p' src/resolver.c | literals
	table_of src/proto.c 'status_names\[\] = {'
	table_of src/proxyproto.c 'status_names\[\] = {'
	grep -h -A1 -e 'hs_fail(h, ' -e 'hs_cannot(h, ' -e 'hs_answer(h, ' src/upstream.c | literals
	grep -h -e 'conn_parent_failed(c, "' -e 'last_why = "' src/conn_parent.c | literals
	table_of src/proto.c 'rep_names\[\] = {'
} | grep -v -x -e ok -e 'need more' -e admitted -e unknown -e 'unknown status' -e succeeded -e '' |
	sort -u >"$tmp/ends"
table_of src/proto.c 'cmd_names\[\] = {' | sort -u >"$tmp/cmds"
grep -o '"socks5d_[a-z_]*"' src/metrics.c | tr -d '"' | sort -u >"$tmp/metrics"
sed -n '/^\.Ss Logging/,/^\.S[sh] /p' man/socks5d.8 >"$tmp/logging"
: >"$tmp/out"
[ "$(wc -l <"$tmp/ends")" -gt 40 ] || echo "only $(wc -l <"$tmp/ends") end reasons found in the code: the extraction broke" >>"$tmp/out"
while IFS= read -r r; do
	grep -q -F "\"$r\"" "$tmp/logging" || echo "end=\"$r\" is not in socks5d(8) Logging" >>"$tmp/out"
done <"$tmp/ends"
while IFS= read -r c; do
	grep -q -w -F "$c" "$tmp/logging" || echo "cmd=$c is not in socks5d(8) Logging" >>"$tmp/out"
done <"$tmp/cmds"
[ "$(wc -l <"$tmp/metrics")" -gt 10 ] || echo "too few metric names found in src/metrics.c" >>"$tmp/out"
while IFS= read -r m; do
	grep -q -w -F "$m" man/socks5d.8 || echo "metric $m is not in socks5d(8)" >>"$tmp/out"
done <"$tmp/metrics"
n="$(wc -l <"$tmp/ends") end reasons, $(wc -l <"$tmp/cmds") commands, $(wc -l <"$tmp/metrics") metrics"
if [ -s "$tmp/out" ]; then
	fail "socks5d(8) names every end= reason, cmd= value and metric the code has ($n)"
else
	pass "socks5d(8) names every end= reason, cmd= value and metric the code has ($n)"
fi

# Users under 'auth none' are never asked for a password: -t warns (issue 20).
if [ -x "$bin" ]; then
	printf 'auth none\nuser alice secret\n' >"$tmp/unused.conf"
	"$bin" -t -f "$tmp/unused.conf" >"$tmp/out" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && grep -q "warning: users are defined but 'auth' does not include password" "$tmp/out"; then
		pass "socks5d -t warns about users under 'auth none'"
	else
		fail "socks5d -t warns about users under 'auth none' (exit $rc)"
	fi
fi

# One version (issue 20): VERSION feeds -V (through the Makefile) and must
# be debian/changelog's top version and the man pages' ".Os socks5d
# VERSION"; the man pages' .Dd is the date of that changelog entry.
version=$(cat VERSION)
: >"$tmp/out"
[ -x "$bin" ] && ! "$bin" -V | grep -qx "socks5d $version" &&
	echo "socks5d -V says '$("$bin" -V)', VERSION says $version" >>"$tmp/out"
top=$(sed -n '1s/^socks5d (\([^)]*\)).*/\1/p' debian/changelog)
[ "$top" = "$version" ] || echo "debian/changelog's top entry is '$top'" >>"$tmp/out"
when=$(sed -n 's/^ -- .*>  [A-Z][a-z][a-z], \([0-9]*\) \([A-Z][a-z][a-z]\) \([0-9]*\) .*/\1 \2 \3/p' \
	debian/changelog | head -n 1)
dd=$(LC_ALL=C date -u -d "$when" '+%B %-d, %Y' 2>/dev/null)
for page in man/socks5d.8 man/socks5d.conf.5; do
	grep -qx ".Os socks5d $version" "$page" || echo "$page: no '.Os socks5d $version'" >>"$tmp/out"
	grep -qx ".Dd $dd" "$page" || echo "$page: .Dd is not '$dd' (debian/changelog)" >>"$tmp/out"
done
if [ -s "$tmp/out" ]; then
	fail "VERSION ($version) = socks5d -V = debian/changelog = the man pages' .Os and .Dd"
else
	pass "VERSION ($version) = socks5d -V = debian/changelog = the man pages' .Os and .Dd"
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
