#!/bin/sh
# run.sh: what `make bench` runs. Builds tests/bench/loadgen.c, then
# measures every mode against: direct (no proxy), refrelay (`loadgen
# relay`, the least a single-threaded epoll SOCKS5 relay does: the floor
# of this machine), socks5d, and microsocks and Dante where installed, and
# prints one table: per metric and system the median [min–max] over the
# rounds, and each proxy's value divided by direct's
# (rates: below 1 is slower than direct; times: above 1 is slower).
#
#   sh tests/bench/run.sh [path/to/socks5d]
#   BENCH_ROUNDS   rounds, each running every mode against every system (3)
#   BENCH_SECONDS  seconds per throughput/session measurement (5)
#   BENCH_LATENCY_COUNT  round trips in the latency mode (20000)
#   BENCH_MODES    the modes to run, a subset of ALL_MODES below
#   BENCH_BASELINE another socks5d binary (say, main before a change), run
#                  as the system "baseline" right after socks5d, same config:
#                  a same-minute A/B with the bench's own pinning and table
#   BENCH_PEERS    "no" leaves out microsocks and Dante (faster A/Bs)
#   BENCH_REFERENCE "no" leaves out refrelay
#   BENCH_SHAPING_LIMITS, BENCH_SHAPING_STREAMS, BENCH_SHAPING_SECONDS
#                  the shaping mode's limits in Mbit/s ("10 200"), session
#                  counts ("1 8 64") and seconds per measurement (10)
#
# Modes: bulk up- and download with 1 and 32 streams, sessions (connect,
# no-auth handshake, CONNECT, one echo, close; 64 at a time), sessions_pw
# (the same with RFC 1929 and a yescrypt user), latency (one connection's
# round trips), udp1 and udp32 (UDP ASSOCIATE with DST 0.0.0.0:0, then 1
# flow of 64-byte datagrams and 32 flows of 1,200-byte ones, 8 in flight per
# flow, to the target's UDP echo: datagrams/s, the proxy's CPU per echoed
# datagram, round-trip p50/p99, and lost, late, malformed and foreign
# replies counted apart), auth (socks5d and the baseline only: a relayed
# session's round trips in quiet seconds and in seconds with a flood of
# wrong logins, which alternate; whether valid logins during the flood all
# pass; and the time to a refusal for a wrong password against an unknown
# name, which must not tell users apart: tests/bench/authload.c), memory
# (idle sessions held).
#
# Users for sessions_pw: socks5d and the baseline get `user` lines with a
# yescrypt hash of a random password (loadgen hash), microsocks that
# password in plain text (-u/-P: all it knows). Dante's username method
# checks the system's password database, so run as root with useradd this
# script adds a system user socks5d-bench with that hash for the run and
# removes it at the end; otherwise (or if that user exists already) Dante
# sits out sessions_pw. refrelay speaks no passwords and sits out that
# mode; in the UDP modes it is the floor (connected sockets, batches, no
# checks: see loadgen.c); microsocks has no UDP ASSOCIATE ("no UDP" under
# the table).
#
# Scheduling: rounds interleave the systems mode by mode, so slow drift of
# this shared machine spreads over all of them, and the order rotates from
# round to round (A B C D E, B C D E A, ...): the system measured last
# inherits the others' kernel state (TIME_WAIT sockets, slab), which cost
# a proxy 10-20 % in session rate and latency when it was always the same. Each
# proxy is started fresh for each single measurement and stopped after it:
# no run inherits another's warm allocator, and the memory mode's baseline
# is an idle process. The proxy runs on CPU 0, loadgen and its target on
# CPU 1; the latency mode runs all three on CPU 0, so it measures the
# relay's work per message, not cross-CPU wakeups. In the session and
# memory modes the target closes each connection first (see loadgen.c), so
# no proxy piles up TIME_WAIT ports that the next one, or Dante's bind
# before connect, would run short of.
#
# refrelay copies in the echo modes and splices in the bulk ones, the
# cheaper way for each (socks5d picks per session as it goes), and sits out
# the memory mode, whose figures are absolute rather than ratios to a floor.
#
# POSIX sh plus `local` (dash, bash). Only processes this script started
# are stopped (each proxy runs in a session of its own, so Dante's children
# go with it). Every wait is bounded. The work tree is shared and `make
# clean` may run meanwhile, so loadgen and a copy of the socks5d under test
# live in a directory of their own under $TMPDIR; raw results
# (results.txt) and the proxies' logs stay there after the run.
# shellcheck shell=dash
set -u

SOCKS5D=${1:-build/socks5d}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-5}
LAT_COUNT=${BENCH_LATENCY_COUNT:-20000}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/socks5d-bench.XXXXXX") || exit 1
LG=$OUT/loadgen
AL=$OUT/authload
RESULTS=$OUT/results.txt
ALL_MODES="upload1 upload32 download1 download32 sessions sessions_pw latency udp1 udp32 auth memory shaping"
MODES=${BENCH_MODES:-$ALL_MODES}
BASELINE=${BENCH_BASELINE:-}

STARTED="" # PIDs started here and not yet stopped
PW_USER=socks5d-bench
PW_PASS=""        # random, set below
PW_HASH=""        # its yescrypt hash
DANTE_USER=""     # "yes" once the system user for Dante exists (made here)

log() {
	printf '%s\n' "$*" >&2
}

# --- process handling --------------------------------------------------------

# True while PID runs (a zombie does not count: it is only waiting for us).
alive() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# Stops PID and whatever it forked into its session (setsid below made the
# session and process group id equal to PID): TERM to PID first, so a
# forking server shuts its children down itself, then TERM to what is left
# of the group, and KILL to all of it after 5 s.
stop_pid() {
	local pid="$1" n=0 rest="" p
	kill -TERM "$pid" 2>/dev/null
	while [ $n -lt 50 ]; do
		if ! alive "$pid"; then
			wait "$pid" 2>/dev/null
			kill -0 "-$pid" 2>/dev/null || break
			kill -TERM "-$pid" 2>/dev/null
		fi
		sleep 0.1
		n=$((n + 1))
	done
	if [ $n -ge 50 ]; then
		log "bench: pid $pid did not stop on TERM in 5 s; killing"
		kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	for p in $STARTED; do [ "$p" = "$pid" ] || rest="$rest $p"; done
	STARTED=$rest
}

cleanup() {
	for p in $STARTED; do stop_pid "$p"; done
	rm -f "$LG" "$OUT/socks5d"
	if [ -n "$DANTE_USER" ]; then
		userdel "$PW_USER" 2>/dev/null || log "bench: could not remove user $PW_USER"
		DANTE_USER=""
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" pinned to CPU $1 in a session of its own, output to $2;
# sets BG_PID. In a non-interactive shell a background job is never a
# process group leader, so setsid does not fork and $! is the program.
start_bg() {
	local cpu="$1" logf="$2"
	shift 2
	setsid taskset -c "$cpu" "$@" >"$logf" 2>&1 &
	BG_PID=$!
	STARTED="$STARTED $BG_PID"
}

# --- targets -------------------------------------------------------------------

# Starts `loadgen target` on CPU $1; sets ECHO_PORT, SINK_PORT, SOURCE_PORT
# and UDP_PORT from its "echo=P sink=P source=P udp=P" line, which also says
# it is listening.
start_target() {
	local f="$OUT/target-cpu$1.out" n=0 line
	: >"$f"
	start_bg "$1" "$f" "$LG" target --max-seconds 7200
	while ! grep -q '^echo=' "$f" && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	line=$(grep '^echo=' "$f") || { log "bench: target did not start:"; cat "$f" >&2; exit 1; }
	ECHO_PORT=$(echo "$line" | sed 's/.*echo=\([0-9]*\).*/\1/')
	SINK_PORT=$(echo "$line" | sed 's/.*sink=\([0-9]*\).*/\1/')
	SOURCE_PORT=$(echo "$line" | sed 's/.*source=\([0-9]*\).*/\1/')
	UDP_PORT=$(echo "$line" | sed 's/.*udp=\([0-9]*\).*/\1/')
}

# --- proxies -------------------------------------------------------------------

# Starts system $1 on CPU 0 with a free port; sets PROXY_PID and PROXY_PORT.
# refrelay moves data as $2 says (copy or splice); with $3 "password" the
# proxy asks for the bench user's password (RFC 1929). Returns 1 if it is
# not listening within 5 s.
start_proxy() {
	local logf="$OUT/$1.log" auth=none method=none
	PROXY_PORT=$("$LG" port) || return 1
	if [ "${3:-}" = password ]; then
		# No lockout: the auth mode's flood would lock its sources out
		# and measure the refusal path instead of the hashing.
		auth="password
user $PW_USER $PW_HASH
auth-fail-limit 0"
		method=username
	fi
	case $1 in
	refrelay)
		start_bg 0 "$logf" "$LG" relay --port "$PROXY_PORT" --data "$2"
		;;
	socks5d | baseline)
		cat >"$OUT/$1.conf" <<-EOF
			listen 127.0.0.1:$PROXY_PORT
			auth $auth
			log-level warn
			${PROXY_EXTRA:-}
			${4:-}
		EOF
		start_bg 0 "$logf" "$OUT/$1" -f "$OUT/$1.conf"
		;;
	microsocks)
		# microsocks logs a line per client and has no switch for
		# it; socks5d at log-level warn logs none, so neither pays
		# for a log file here. Its password is plain text (-P).
		# shellcheck disable=SC2016 # expanded by the inner sh
		start_bg 0 "$logf" sh -c 'exec "$0" "$@" >/dev/null 2>&1' \
			/usr/bin/microsocks -i 127.0.0.1 -p "$PROXY_PORT" \
			$([ "$method" = username ] && echo "-u $PW_USER -P $PW_PASS")
		;;
	dante)
		cat >"$OUT/danted.conf" <<-EOF
			# written by tests/bench/run.sh
			logoutput: stderr
			internal: 127.0.0.1 port = $PROXY_PORT
			external: 127.0.0.1
			socksmethod: $method
			clientmethod: none
			user.privileged: root
			user.unprivileged: nobody
			client pass {
				from: 127.0.0.0/8 to: 0.0.0.0/0
			}
			socks pass {
				from: 127.0.0.0/8 to: 0.0.0.0/0
			}
		EOF
		start_bg 0 "$logf" /usr/sbin/danted -f "$OUT/danted.conf" -p "$OUT/danted.pid"
		;;
	esac
	PROXY_PID=$BG_PID
	if ! "$LG" wait-port "127.0.0.1:$PROXY_PORT" --seconds 5 || ! alive "$PROXY_PID"; then
		log "bench: $1 did not start; its log:"
		tail -n 5 "$logf" >&2
		stop_pid "$PROXY_PID"
		return 1
	fi
	return 0
}

# --- the shaping mode (issue 18) -------------------------------------------------

# socks5d only (the others have no limits): for each limit and session
# count, one rule limiting every session together, and that many download
# streams for BENCH_SHAPING_SECONDS; loadgen reports the delivered rate
# (shpLIMIT_N, Mbit/s), its error against the limit (_err, %) and the
# spread of the sessions' shares (_spread: the largest over the smallest,
# less 1, in %).
run_shaping() {
	local sys="$1" limit streams out rc
	[ "$sys" = socks5d ] || return
	for limit in ${BENCH_SHAPING_LIMITS:-10 200}; do
		for streams in ${BENCH_SHAPING_STREAMS:-1 8 64}; do
			PROXY_EXTRA="rule allow all rate ${limit}mbit ${limit}mbit"
			if ! start_proxy "$sys" splice; then
				echo "$sys shaping FAILED" >>"$RESULTS"
				continue
			fi
			out=$OUT/run.out
			timeout -k 5 $((${BENCH_SHAPING_SECONDS:-10} * 3 + 60)) taskset -c 1 "$LG" \
				shaping --streams "$streams" --seconds "${BENCH_SHAPING_SECONDS:-10}" \
				--warmup 1 --limit-mbit "$limit" --target "127.0.0.1:$SOURCE_PORT" \
				--proxy "127.0.0.1:$PROXY_PORT" >"$out" 2>"$OUT/run.err"
			rc=$?
			stop_pid "$PROXY_PID"
			PROXY_EXTRA=""
			sed -n 's/^metric=\([^ ]*\) value=\([^ ]*\) unit=\(.*\)$/\1 \2 \3/p' "$out" |
				while read -r m v u; do echo "$sys $m $v $u"; done >>"$RESULTS"
			log "  $sys shaping ${limit}mbit x$streams: $(sed -n 's/^metric=\([^ ]*\) value=\([^ ]*\) .*$/\1=\2/p' "$out" | tr '\n' ' ')"
			if [ $rc -ne 0 ]; then
				echo "$sys shaping FAILED" >>"$RESULTS"
				log "  $sys shaping FAILED (exit $rc): $(head -c 300 "$OUT/run.err" | tr '\n' ' ')"
			fi
		done
	done
}

# --- one measurement -----------------------------------------------------------

# Runs mode $2 against system $1 and appends "system metric value unit"
# lines to $RESULTS; a failure appends "system mode FAILED".
run_one() {
	local sys="$1" mode="$2" cpu=1 via="" pidopt="" args port out rc summary extra
	local data=splice auth=none tool=$LG
	if [ ! -x "$LG" ] || [ ! -w "$RESULTS" ]; then
		log "bench: $OUT was removed under us; stopping"
		exit 1
	fi
	if [ "$mode" = shaping ]; then
		run_shaping "$sys"
		return
	fi
	case $mode in
	upload*) args="upload --streams ${mode#upload} --seconds $SECS" port=$SINK_PORT ;;
	download*) args="download --streams ${mode#download} --seconds $SECS" port=$SOURCE_PORT ;;
	sessions) args="sessions --workers 64 --seconds $SECS" port=$ECHO_PORT data=copy ;;
	sessions_pw)
		args="sessions --workers 64 --seconds $SECS --prefix pw"
		[ "$sys" != direct ] && args="$args --user $PW_USER --pass $PW_PASS" auth=password
		port=$ECHO_PORT data=copy
		;;
	latency) args="latency --count $LAT_COUNT --seconds 60" port=$ECHO_PORT0 cpu=0 data=copy ;;
	udp1) args="udp --flows 1 --size 64 --window 8 --seconds $SECS" port=$UDP_PORT ;;
	udp32) args="udp --flows 32 --size 1200 --window 8 --seconds $SECS" port=$UDP_PORT ;;
	memory) args="memory --seconds 120" port=$ECHO_PORT ;;
	auth)
		args="--seconds $SECS --rate 300 --sources 60 --tries 40 --user $PW_USER --pass $PW_PASS"
		port=$ECHO_PORT auth=password data=copy tool=$AL
		;;
	esac
	case $sys/$mode in
	refrelay/memory | refrelay/sessions_pw) return ;;
	direct/auth | refrelay/auth | microsocks/auth | dante/auth) return ;;
	dante/sessions_pw) [ -n "$DANTE_USER" ] || return ;;
	esac
	if [ "$sys" != direct ]; then
		# The memory mode holds as many connections as the fd limit
		# lets loadgen open, past socks5d's default max-connections
		# (the limit less 256 kept back, halved).
		extra=""
		[ "$mode" = memory ] && extra="max-connections 0"
		if ! start_proxy "$sys" "$data" "$auth" "$extra"; then
			echo "$sys $mode FAILED" >>"$RESULTS"
			return
		fi
		via="--proxy 127.0.0.1:$PROXY_PORT"
		[ "$mode" != auth ] && pidopt="--pid $PROXY_PID"
	fi
	out=$OUT/run.out
	# shellcheck disable=SC2086 # word splitting of args is intended
	timeout -k 5 $((SECS * 3 + 200)) taskset -c "$cpu" "$tool" $args --target "127.0.0.1:$port" \
		$via $pidopt >"$out" 2>"$OUT/run.err"
	rc=$?
	if [ "$sys" != direct ]; then
		if ! alive "$PROXY_PID"; then
			log "bench: $sys exited during $mode"
			rc=1
		fi
		stop_pid "$PROXY_PID"
	fi
	sed -n 's/^metric=\([^ ]*\) value=\([^ ]*\) unit=\(.*\)$/\1 \2 \3/p' "$out" |
		while read -r m v u; do echo "$sys $m $v $u"; done >>"$RESULTS"
	summary=$(sed -n 's/^metric=\([^ ]*\) value=\([^ ]*\) unit=\(.*\)$/\1=\2/p' "$out" | tr '\n' ' ')
	log "  $sys $mode: $summary"
	if [ $rc -eq 3 ] && [ "${mode#udp}" != "$mode" ]; then
		# loadgen: the proxy refused UDP ASSOCIATE (microsocks).
		echo "$sys $mode NOUDP" >>"$RESULTS"
		log "  $sys $mode: no UDP"
	elif [ $rc -ne 0 ]; then
		echo "$sys $mode FAILED" >>"$RESULTS"
		log "  $sys $mode FAILED (exit $rc): $(head -c 300 "$OUT/run.err" | tr '\n' ' ')"
	fi
}

# The words of $1 rotated left by ($2 - 1) places.
rotated() {
	local n=$(( ($2 - 1) % $(echo "$1" | wc -w) )) head="" w
	for w in $1; do
		if [ "$n" -gt 0 ]; then
			head="$head $w"
			n=$((n - 1))
		else
			printf '%s ' "$w"
		fi
	done
	printf '%s\n' "$head"
}

# --- the table -----------------------------------------------------------------

# Reads $RESULTS; prints rows = metrics (first-seen order), columns = the
# systems with median [min–max], and proxy/direct for Gbit/s, sessions/s
# and µs metrics. Failed runs are listed under the table.
print_table() {
	awk -v systems="$SYSTEMS" -v rounds="$ROUNDS" '
	function fmt(v) {
		a = v < 0 ? -v : v
		if (v == int(v)) return sprintf("%d", v)
		if (a >= 100) return sprintf("%.0f", v)
		if (a >= 10) return sprintf("%.1f", v)
		if (a >= 1) return sprintf("%.2f", v)
		return sprintf("%.3f", v)
	}
	# Display width: the en dash is 3 bytes but one column.
	function width(s,   t) { t = s; return length(s) - 2 * gsub(/–/, "", t) }
	function pad(s, w) { while (width(s) < w) s = s " "; return s }
	function lpad(s, w) { while (width(s) < w) s = " " s; return s }
	function median_of(key,   n, i, j, t, v) {
		n = cnt[key]
		for (i = 1; i <= n; i++) v[i] = val[key, i]
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
				t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
			}
		lo = v[1]; hi = v[n]
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	$3 == "FAILED" { failed[$1 " " $2]++; next }
	$3 == "NOUDP" { noudp[$1] = 1; next }
	{
		if (!($2 in unit)) { order[++nm] = $2; unit[$2] = $4 }
		k = $2 SUBSEP $1
		val[k, ++cnt[k]] = $3
	}
	END {
		ns = split(systems, sys, " ")
		cw = 22
		line = pad("metric", 21) pad("unit", 15)
		for (s = 1; s <= ns; s++) {
			line = line lpad(sys[s], cw)
			if (sys[s] != "direct") line = line lpad("/direct", 9)
		}
		print line
		for (i = 1; i <= nm; i++) {
			m = order[i]
			u = unit[m]
			ratio_ok = (u == "Gbit/s" || u == "sessions/s" || u == "dgrams/s" || u == "us")
			line = pad(m, 21) pad(u, 15)
			dmed = ""
			for (s = 1; s <= ns; s++) {
				k = m SUBSEP sys[s]
				if (cnt[k]) {
					med = median_of(k)
					cell = fmt(med) " [" fmt(lo) "–" fmt(hi) "]"
				} else {
					med = ""
					cell = "-"
				}
				line = line lpad(cell, cw)
				if (sys[s] == "direct") {
					dmed = med
					continue
				}
				r = "-"
				if (ratio_ok && med != "" && dmed != "" && dmed > 0)
					r = sprintf("%.2fx", med / dmed)
				line = line lpad(r, 9)
			}
			print line
		}
		for (f in failed)
			printf "FAILED: %s (%d of %d rounds)\n", f, failed[f], rounds | "sort"
		close("sort")
		for (f in noudp)
			printf "no UDP (UDP ASSOCIATE refused): %s\n", f
	}' "$RESULTS"
}

# --- main ----------------------------------------------------------------------

${CC:-cc} -std=c17 -O2 -Wall -Wextra -D_GNU_SOURCE -o "$LG" tests/bench/loadgen.c -lcrypt || exit 1
${CC:-cc} -std=c17 -O2 -Wall -Wextra -D_GNU_SOURCE -o "$AL" tests/bench/authload.c -lcrypt || exit 1
[ -x "$SOCKS5D" ] || { log "bench: $SOCKS5D not built"; exit 1; }
cp "$SOCKS5D" "$OUT/socks5d" || exit 1
for mode in $MODES; do
	case " $ALL_MODES " in
	*" $mode "*) ;;
	*) log "bench: unknown mode '$mode' in BENCH_MODES (modes: $ALL_MODES)"; exit 1 ;;
	esac
done
if [ -n "$BASELINE" ]; then
	[ -x "$BASELINE" ] || { log "bench: BENCH_BASELINE $BASELINE is not an executable"; exit 1; }
	cp "$BASELINE" "$OUT/baseline" || exit 1
fi
command -v taskset >/dev/null || { log "bench: taskset (util-linux) is needed"; exit 1; }
PW_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
PW_HASH=$("$LG" hash "$PW_PASS") || exit 1
[ "$(nproc)" -ge 2 ] || { log "bench: needs 2 CPUs (proxy on 0, load on 1)"; exit 1; }

SYSTEMS="direct"
[ "${BENCH_REFERENCE:-yes}" != no ] && SYSTEMS="$SYSTEMS refrelay"
SYSTEMS="$SYSTEMS socks5d"
[ -n "$BASELINE" ] && SYSTEMS="$SYSTEMS baseline"
if [ "${BENCH_PEERS:-yes}" != no ]; then
	[ -x /usr/bin/microsocks ] && SYSTEMS="$SYSTEMS microsocks"
	[ -x /usr/sbin/danted ] && SYSTEMS="$SYSTEMS dante"
fi

# Dante checks passwords against the system's users: one for this run.
case " $SYSTEMS :: $MODES " in
*" dante "*::*sessions_pw*)
	if [ "$(id -u)" != 0 ] || ! command -v useradd >/dev/null; then
		log "bench: Dante sits out sessions_pw: adding its system user needs root and useradd"
	elif id "$PW_USER" >/dev/null 2>&1; then
		log "bench: Dante sits out sessions_pw: user $PW_USER exists already (left by a killed run? userdel it)"
	elif useradd --system --no-create-home --shell /usr/sbin/nologin "$PW_USER" &&
		DANTE_USER=yes && echo "$PW_USER:$PW_HASH" | chpasswd -e; then
		:
	else
		log "bench: Dante sits out sessions_pw: could not add user $PW_USER"
		[ -n "$DANTE_USER" ] && userdel "$PW_USER" 2>/dev/null
		DANTE_USER=""
	fi
	;;
esac

# The memory mode sizes itself from the fd limit; the proxies inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# Other work on this machine skews every number: say how busy it was.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
start_target 0
ECHO_PORT0=$ECHO_PORT
start_target 1
: >"$RESULTS"
log "bench: $SYSTEMS; $ROUNDS rounds, ${SECS} s per measurement, fd limit $(ulimit -n)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	for mode in $MODES; do
		log "round $r/$ROUNDS: $mode"
		for sys in $(rotated "$SYSTEMS" "$r"); do run_one "$sys" "$mode"; done
	done
	r=$((r + 1))
done
cleanup

echo
echo "socks5d bench: rounds=$ROUNDS, ${SECS} s per measurement; median [min–max] over the rounds"
echo "cpu-s/GB, cpu-us/session, cpu-us/dgram: the proxy's CPU time (all its processes) per unit of work"
echo "udpN_*: N flows (1: 64-byte, 32: 1,200-byte datagrams), 8 in flight each; cpu and rate per echoed datagram"
echo "load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw results and proxy logs: $OUT"
print_table
