#!/bin/sh
# deb_check.sh: installs the .deb that `make deb` built on this machine and
# checks it as an administrator would (issue 20): the installed files, the
# conffile, `socks5d -t` on the shipped configuration and that it listens on
# loopback only, `systemd-analyze verify` on the installed units, that the
# service was enabled (and, where systemd runs, started), then `dpkg -r`
# (the configuration stays) and `dpkg -P` (everything the package created
# is gone). Needs root; changes the machine's package database, so it
# refuses to run when a socks5d package is installed already.
#
# usage: sh tests/deb_check.sh build/deb/socks5d_VERSION_ARCH.deb
# Prints one line per check and "N passed, M failed"; exits 1 on any failure.

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	echo "usage: $0 path/to/socks5d_VERSION_ARCH.deb" >&2
	exit 2
fi
deb=$1
cd "$(dirname "$0")/.." || exit 2
if [ "$(id -u)" != 0 ]; then
	echo "SKIP deb_check: needs root (dpkg -i)"
	exit 0
fi
if dpkg-query -W -f='${Status}' socks5d 2>/dev/null | grep -q 'installed\|config-files'; then
	echo "deb_check: a socks5d package is installed already; not touching it" >&2
	exit 1
fi

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deb_check.XXXXXX") || exit 2
# Whatever happens below, the package this run installed does not stay
# (a later run would refuse to start).
cleanup() {
	if dpkg-query -W -f='${Status}' socks5d 2>/dev/null | grep -q 'installed\|config-files'; then
		echo "deb_check: purging the socks5d this run installed"
		dpkg -P socks5d >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
version=$(cat VERSION)
wants=/etc/systemd/system/multi-user.target.wants/socks5d.service

pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}

fail() {
	echo "FAIL $1"
	[ -s "$tmp/out" ] && sed 's/^/    /' "$tmp/out"
	failed=$((failed + 1))
}

check() {
	what=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		pass "$what"
	else
		fail "$what"
	fi
}

absent() {
	for p in "$@"; do
		if [ -e "$p" ] || [ -L "$p" ]; then
			echo "$p is still there"
			return 1
		fi
	done
}

# Every listen line of the effective configuration is on loopback.
loopback_only() {
	/usr/sbin/socks5d -T -f /etc/socks5d/socks5d.conf >"$tmp/dump" || return 1
	grep '^listen ' "$tmp/dump"
	! grep '^listen ' "$tmp/dump" | grep -v -e '^listen 127\.' -e '^listen \[::1\]:'
}

files="/usr/sbin/socks5d /usr/share/man/man8/socks5d.8.gz /usr/share/man/man5/socks5d.conf.5.gz
/lib/systemd/system/socks5d.service /lib/systemd/system/socks5d.socket
/etc/socks5d/socks5d.conf /usr/share/doc/socks5d/copyright"

# ---- install ------------------------------------------------------------------
check "dpkg -i $(basename "$deb")" dpkg -i "$deb"
for f in $files; do
	check "installed: $f" test -f "$f"
done
check "/etc/socks5d/socks5d.conf is a conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}' socks5d | grep -q ' /etc/socks5d/socks5d.conf '"
check "socks5d -V prints $version" sh -c "/usr/sbin/socks5d -V | grep -qx 'socks5d $version'"
check "socks5d -t -f /etc/socks5d/socks5d.conf" /usr/sbin/socks5d -t -f /etc/socks5d/socks5d.conf
check "the shipped configuration listens on loopback only" loopback_only
check "ExecStart is /usr/sbin/socks5d" grep -q '^ExecStart=/usr/sbin/socks5d ' \
	/lib/systemd/system/socks5d.service
if command -v systemd-analyze >/dev/null 2>&1; then
	# Any output (unknown keys are only warnings) counts as a failure.
	systemd-analyze verify /lib/systemd/system/socks5d.service \
		/lib/systemd/system/socks5d.socket >"$tmp/out" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && [ ! -s "$tmp/out" ]; then
		pass "systemd-analyze verify the installed units"
	else
		fail "systemd-analyze verify the installed units (exit $rc)"
	fi
else
	echo "SKIP systemd-analyze verify: systemd-analyze not installed"
fi
check "the service is enabled ($wants)" test -L "$wants"
if [ -d /run/systemd/system ]; then
	check "systemd runs: the service was started" systemctl is-active --quiet socks5d.service
else
	echo "SKIP the service was started: systemd is not running here (postinst skips the start)"
fi

# ---- remove: the configuration stays ---------------------------------------------
check "dpkg -r socks5d" dpkg -r socks5d
check "removed: binary, man pages, units" absent /usr/sbin/socks5d \
	/usr/share/man/man8/socks5d.8.gz /usr/share/man/man5/socks5d.conf.5.gz \
	/lib/systemd/system/socks5d.service /lib/systemd/system/socks5d.socket
check "removed: the conffile stays" test -f /etc/socks5d/socks5d.conf

# ---- purge: nothing the package created is left ----------------------------------
check "dpkg -P socks5d" dpkg -P socks5d
check "purged: /etc/socks5d, the enable link and the quota state are gone" absent \
	/etc/socks5d "$wants" /usr/share/doc/socks5d /var/lib/socks5d /var/lib/private/socks5d \
	/var/lib/systemd/deb-systemd-helper-enabled/socks5d.service.dsh-also
check "purged: dpkg knows no socks5d" sh -c '! dpkg-query -W socks5d 2>/dev/null | grep -q .'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
