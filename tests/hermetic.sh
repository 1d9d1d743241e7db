#!/bin/sh
# hermetic.sh: runs a command with a hostile /etc/resolv.conf, to prove the
# tests do not depend on the host's resolver (issue 20: a host whose
# resolv.conf said "options timeout:1" broke a DNS test, because the daemon
# took its try timeout from there although the test named its nameserver).
#
# The command runs in a private mount namespace (unshare -m; as non-root,
# unshare -rm where the kernel allows user namespaces) in which a file
# saying "timeout:1 attempts:1" and naming a nameserver that nobody answers
# on (127.0.0.1 port 53: refused at once, never a packet off the machine)
# is bind-mounted over /etc/resolv.conf. Nothing outside the namespace sees
# the change. The tests must configure what they rely on (nameserver,
# timeout dns, dns-attempts) instead.
#
# usage: sh tests/hermetic.sh COMMAND [ARG...]
# e.g.   sh tests/hermetic.sh make integration-tests   (make test-hermetic)
set -eu

if [ $# -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi

if [ "${SOCKS5D_HERMETIC_INSIDE:-}" = 1 ]; then
	# Inside the namespace: make the mount private to it, then swap the file.
	mount --make-rprivate / 2>/dev/null || true
	mount --bind "$SOCKS5D_HERMETIC_RESOLV" /etc/resolv.conf
	echo "hermetic: /etc/resolv.conf is now:"
	sed 's/^/hermetic:   /' /etc/resolv.conf
	unset SOCKS5D_HERMETIC_INSIDE SOCKS5D_HERMETIC_RESOLV
	exec "$@"
fi

command -v unshare >/dev/null 2>&1 || {
	echo "hermetic: unshare (util-linux) is needed" >&2
	exit 1
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hermetic.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
cat >"$tmp/resolv.conf" <<'EOF'
# socks5d tests/hermetic.sh: nobody answers here, and every try is short.
nameserver 127.0.0.1
options timeout:1 attempts:1 ndots:5
search invalid
EOF
chmod 644 "$tmp/resolv.conf"
chmod 755 "$tmp"

if [ "$(id -u)" = 0 ]; then
	ns="-m"
else
	ns="-rm"
fi
rc=0
SOCKS5D_HERMETIC_INSIDE=1 SOCKS5D_HERMETIC_RESOLV="$tmp/resolv.conf" \
	unshare $ns sh "$0" "$@" || rc=$?
exit $rc
