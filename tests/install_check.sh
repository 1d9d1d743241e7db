#!/bin/sh
# install_check.sh: `make install` and `make uninstall` into a temporary
# DESTDIR with PREFIX=/usr, as a distribution package would run them.
# Checks the installed tree (binary, man pages, systemd units with the
# /usr/sbin path substituted, the example configuration), that a second
# install keeps an administrator's edited configuration, that uninstall
# removes the files but keeps the configuration, and, when systemd-analyze
# is installed, that `systemd-analyze verify` accepts the units.
#
# usage: sh tests/install_check.sh
# Prints one line per check and "N passed, M failed"; exits 1 on any failure.

# Paths below are relative to the repository root.
cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/install_check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
unitdir=$root/usr/lib/systemd/system
conf=$root/etc/socks5d/socks5d.conf

pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}

fail() {
	echo "FAIL $1"
	[ -s "$tmp/out" ] && sed 's/^/    /' "$tmp/out"
	failed=$((failed + 1))
}

# check DESCRIPTION COMMAND...: runs the command with its output in
# $tmp/out (shown on failure).
check() {
	what=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		pass "$what"
	else
		fail "$what"
	fi
}

mode_is() {
	[ -f "$2" ] && [ "$(stat -c %a "$2")" = "$1" ]
}

# ---- first install ----------------------------------------------------------
check "make install DESTDIR=... PREFIX=/usr" make --no-print-directory install \
	DESTDIR="$root" PREFIX=/usr
check "usr/sbin/socks5d is executable (mode 755)" mode_is 755 "$root/usr/sbin/socks5d"
check "usr/sbin/socks5d -V runs" "$root/usr/sbin/socks5d" -V
check "man page usr/share/man/man8/socks5d.8 (mode 644)" \
	mode_is 644 "$root/usr/share/man/man8/socks5d.8"
check "man page usr/share/man/man5/socks5d.conf.5 (mode 644)" \
	mode_is 644 "$root/usr/share/man/man5/socks5d.conf.5"
check "usr/lib/systemd/system/socks5d.service (mode 644)" mode_is 644 "$unitdir/socks5d.service"
check "usr/lib/systemd/system/socks5d.socket (mode 644)" mode_is 644 "$unitdir/socks5d.socket"
check "socks5d.service has ExecStart=/usr/sbin/socks5d" \
	grep -q '^ExecStart=/usr/sbin/socks5d ' "$unitdir/socks5d.service"
# The unit is written for /usr/local: every path in it must follow PREFIX.
if grep -n '/usr/local' "$unitdir/socks5d.service" >"$tmp/out" 2>&1; then
	fail "socks5d.service has no /usr/local path left"
else
	pass "socks5d.service has no /usr/local path left"
fi
check "etc/socks5d/socks5d.conf (mode 644)" mode_is 644 "$conf"
check "the installed configuration passes socks5d -t" "$root/usr/sbin/socks5d" -t -f "$conf"

# ---- a second install keeps the administrator's configuration ----------------
if [ -f "$conf" ]; then
	printf '# edited by the administrator\n' >>"$conf"
	cp "$conf" "$tmp/edited.conf"
fi
check "second make install" make --no-print-directory install DESTDIR="$root" PREFIX=/usr
check "second install keeps the edited etc/socks5d/socks5d.conf" cmp "$tmp/edited.conf" "$conf"

# ---- systemd-analyze verify ----------------------------------------------------
# verify wants ExecStart's binary to exist at its path and the
# Documentation= man pages to be found: a copy of the units naming the
# binary in DESTDIR, and MANPATH pointing into DESTDIR. Any output (unknown
# keys are only warnings) counts as a failure.
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$tmp/verify"
	for u in socks5d.service socks5d.socket; do
		sed "s|/usr/sbin/socks5d|$root/usr/sbin/socks5d|g" "$unitdir/$u" >"$tmp/verify/$u"
	done
	man=--man=yes
	command -v man >/dev/null 2>&1 || man=--man=no
	MANPATH=$root/usr/share/man systemd-analyze verify "$man" \
		"$tmp/verify/socks5d.service" "$tmp/verify/socks5d.socket" >"$tmp/out" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && [ ! -s "$tmp/out" ]; then
		pass "systemd-analyze verify socks5d.service socks5d.socket"
	else
		fail "systemd-analyze verify socks5d.service socks5d.socket (exit $rc)"
	fi
else
	echo "SKIP systemd-analyze verify: systemd-analyze not installed"
fi

# ---- uninstall ------------------------------------------------------------------
check "make uninstall DESTDIR=... PREFIX=/usr" make --no-print-directory uninstall \
	DESTDIR="$root" PREFIX=/usr
for f in usr/sbin/socks5d usr/share/man/man8/socks5d.8 usr/share/man/man5/socks5d.conf.5 \
	usr/lib/systemd/system/socks5d.service usr/lib/systemd/system/socks5d.socket; do
	if [ -e "$root/$f" ]; then
		fail "uninstall removes $f"
	else
		pass "uninstall removes $f"
	fi
done
check "uninstall keeps the edited etc/socks5d/socks5d.conf" cmp "$tmp/edited.conf" "$conf"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
