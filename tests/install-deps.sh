#!/bin/sh
# Installs what `make test` needs on Debian when it is missing. As root it
# runs apt-get; otherwise it prints the exact command and stops.
set -u
PKGS="libcmocka-dev libcrypt-dev curl ncat python3 python3-socks clang libclang-rt-14-dev mandoc \
	haproxy iproute2"
missing=""
have_header() { printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <%s>\n' "$1" | ${CC:-cc} -E -x c - >/dev/null 2>&1; }
have_header cmocka.h || missing="$missing libcmocka-dev"
have_header crypt.h || missing="$missing libcrypt-dev"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v ncat >/dev/null 2>&1 || missing="$missing ncat"
PY=/usr/bin/python3; [ -x $PY ] || PY=python3
$PY -c 'import socks' >/dev/null 2>&1 || missing="$missing python3-socks"
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v mandoc >/dev/null 2>&1 || missing="$missing mandoc"
# The three HAProxy tests (test_access.c) skip without it.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
# The egress tests' network namespaces (test_egress.c) skip without ip(8).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$missing iproute2"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq $PKGS >/dev/null || {
		echo "install-deps: apt-get failed" >&2; exit 1; }
	exit 0
fi
echo "install-deps: missing:$missing" >&2
echo "install-deps: run as root:  apt-get install -y $PKGS" >&2
exit 1
