#!/bin/sh
# real_clients.sh: drives the daemon with a real SOCKS client (curl) against a
# local HTTP server (python3 -m http.server) serving a known file, on
# loopback only. Usage: sh tests/integration/real_clients.sh build/socks5d
# Prints PASS/FAIL/SKIP lines and "N passed, N failed"; exits 1 on failure.
# Every wait is bounded; only the processes started here are stopped, by PID.
set -u

DAEMON=${1:?usage: real_clients.sh /path/to/socks5d}
PASSED=0
FAILED=0
TMP=
HTTP_PID=
HTTP6_PID=
DAEMON_PID=

pass() { echo "PASS: $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $1"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP: $1"; }

finish() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	exit $?
}

# stop PID: SIGTERM, up to 5 s, then SIGKILL. Sets STOP_STATUS to its exit status.
stop() {
	_pid=$1
	STOP_STATUS=
	[ -n "$_pid" ] || return 0
	kill -TERM "$_pid" 2>/dev/null
	_i=0
	while kill -0 "$_pid" 2>/dev/null && [ $_i -lt 50 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	if kill -0 "$_pid" 2>/dev/null; then
		kill -KILL "$_pid" 2>/dev/null
		STOP_STATUS=killed
	fi
	wait "$_pid" 2>/dev/null
	_st=$?
	[ -n "$STOP_STATUS" ] || STOP_STATUS=$_st
}

# shellcheck disable=SC2317 # run from the EXIT trap
cleanup() {
	stop "$DAEMON_PID"
	stop "$HTTP_PID"
	stop "$HTTP6_PID"
	[ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

random_port() {
	# Below the ephemeral range (32768+), so no client socket holds it.
	echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 12000))
}

# listening PORT: true when something listens on 127.0.0.1:PORT (read from
# /proc, so checking makes no connection to the daemon).
listening() {
	_hex=$(printf '%04X' "$1")
	grep -qE "^ *[0-9]+: 0100007F:$_hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null
}

# listening6 PORT: the same for [::1]:PORT.
# shellcheck disable=SC2317 # called as wait_listen's CHECK
listening6() {
	_hex=$(printf '%04X' "$1")
	grep -qE "^ *[0-9]+: 0{24}01000000:$_hex 0{32}:0000 0A" /proc/net/tcp6 2>/dev/null
}

# wait_listen PID PORT [CHECK]: up to 5 s; false if PID exits first or time
# runs out. CHECK is listening (default) or listening6.
wait_listen() {
	_i=0
	while [ $_i -lt 50 ]; do
		kill -0 "$1" 2>/dev/null || return 1
		"${3:-listening}" "$2" && return 0
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

# start_daemon "CONFIG LINES": sets DAEMON_PID and PORT; retries on port races.
start_daemon() {
	: >"$TMP/socks5d.log"
	_try=1
	while [ $_try -le 5 ]; do
		PORT=$(random_port)
		if ! listening "$PORT"; then
			{
				echo "# written by tests/integration/real_clients.sh"
				echo "listen 127.0.0.1:$PORT"
				printf '%s\n' "$1"
				echo "log-level debug"
			} >"$TMP/socks5d.conf"
			"$DAEMON" -f "$TMP/socks5d.conf" </dev/null >>"$TMP/socks5d.log" 2>&1 &
			DAEMON_PID=$!
			wait_listen "$DAEMON_PID" "$PORT" && return 0
			stop "$DAEMON_PID"
			DAEMON_PID=
		fi
		_try=$((_try + 1))
	done
	echo "daemon did not start; config and log:" >&2
	cat "$TMP/socks5d.conf" "$TMP/socks5d.log" >&2
	return 1
}

# stop_daemon NAME: stops it and records whether it exited 0 on SIGTERM.
stop_daemon() {
	stop "$DAEMON_PID"
	DAEMON_PID=
	if [ "$STOP_STATUS" = 0 ]; then
		pass "$1: daemon exits 0 on SIGTERM"
	else
		fail "$1: daemon exit status after SIGTERM is $STOP_STATUS, want 0"
		tail -n 20 "$TMP/socks5d.log"
	fi
}

# fetch NAME WANT_SUM curl-args...: the body must match the served file.
fetch() {
	_name=$1
	shift
	if _sum=$(curl -sS --fail --max-time 10 "$@" | cksum) && [ "$_sum" = "$WANT" ]; then
		pass "$_name"
	else
		fail "$_name (curl $*; body cksum '${_sum:-}' want '$WANT')"
		tail -n 20 "$TMP/socks5d.log"
	fi
}

# refused NAME curl-args...: curl must fail.
refused() {
	_name=$1
	shift
	if curl -sS --max-time 10 -o /dev/null "$@" 2>"$TMP/curl.err"; then
		fail "$_name (curl $* succeeded)"
	else
		pass "$_name ($(head -n 1 "$TMP/curl.err"))"
	fi
}

[ -x "$DAEMON" ] || { fail "$DAEMON is not executable"; finish; }
if ! command -v curl >/dev/null 2>&1; then
	skip "curl is not installed"
	finish
fi
if ! command -v python3 >/dev/null 2>&1; then
	skip "python3 is not installed (needed for the HTTP target)"
	finish
fi

TMP=$(mktemp -d /tmp/socks5d-rc.XXXXXX) || exit 1
mkdir "$TMP/www"
# 1 MiB of pseudo-random bytes: a known file whose checksum we compare.
head -c 1048576 /dev/urandom >"$TMP/www/blob.bin"
WANT=$(cksum <"$TMP/www/blob.bin")

# HTTP target on 127.0.0.1 and, when IPv6 loopback exists, [::1] on the same
# port, so "localhost" works whichever address the daemon resolves it to.
_try=1
while [ $_try -le 5 ]; do
	HPORT=$(random_port)
	if ! listening "$HPORT"; then
		python3 -m http.server --bind 127.0.0.1 --directory "$TMP/www" "$HPORT" \
			</dev/null >"$TMP/http.log" 2>&1 &
		HTTP_PID=$!
		wait_listen "$HTTP_PID" "$HPORT" && break
		stop "$HTTP_PID"
		HTTP_PID=
	fi
	_try=$((_try + 1))
done
if [ -z "$HTTP_PID" ]; then
	fail "HTTP target did not start"
	cat "$TMP/http.log"
	finish
fi
if grep -q '00000000000000000000000001000000' /proc/net/if_inet6 2>/dev/null; then
	python3 -m http.server --bind ::1 --directory "$TMP/www" "$HPORT" \
		</dev/null >"$TMP/http6.log" 2>&1 &
	HTTP6_PID=$!
	if ! wait_listen "$HTTP6_PID" "$HPORT" listening6; then
		echo "note: no HTTP target on [::1]:$HPORT; localhost must resolve to 127.0.0.1"
		stop "$HTTP6_PID"
		HTTP6_PID=
	fi
fi
URL=http://127.0.0.1:$HPORT/blob.bin

# --- auth none -------------------------------------------------------------
if start_daemon "auth none"; then
	fetch "curl --socks5 (auth none) fetches the file intact" \
		--socks5 "127.0.0.1:$PORT" "$URL"
	fetch "curl --socks5-hostname localhost (domain name) fetches the file intact" \
		--socks5-hostname "127.0.0.1:$PORT" "http://localhost:$HPORT/blob.bin"
	stop_daemon "auth none"
else
	fail "daemon did not start (auth none)"
fi

# --- auth password ----------------------------------------------------------
if start_daemon "auth password
user alice wonderland"; then
	fetch "curl --socks5 -U alice:wonderland fetches the file intact" \
		--socks5 "127.0.0.1:$PORT" -U alice:wonderland "$URL"
	refused "curl --socks5 -U alice:wrong is refused" \
		--socks5 "127.0.0.1:$PORT" -U alice:wrong "$URL"
	refused "curl --socks5 without credentials is refused" \
		--socks5 "127.0.0.1:$PORT" "$URL"
	fetch "curl --socks5-hostname -U alice:wonderland localhost fetches the file intact" \
		--socks5-hostname "127.0.0.1:$PORT" -U alice:wonderland \
		"http://localhost:$HPORT/blob.bin"
	stop_daemon "auth password"
else
	fail "daemon did not start (auth password)"
fi

finish
