#!/bin/sh
# passwd_check.sh: `socks5d passwd` (issue 20) from a pseudo-terminal and
# from standard input. Checks that the line verifies with crypt(3) (through
# libcrypt, from python3's ctypes) for yescrypt and sha512, that the
# terminal's echo is off (the password never appears on it) and a mistyped
# second entry changes nothing, that an existing file keeps its other lines,
# its owner and its mode, that -D deletes, that the daemon accepts the
# file, and that a write that fails half-way (RLIMIT_FSIZE) leaves the old
# file whole and no temporary file behind.
#
# usage: sh tests/passwd_check.sh path/to/socks5d
# Prints one line per check and "N passed, M failed"; exits 1 on any failure.
# Every wait is bounded (the pty driver: 20 s per run).

if [ $# -ne 1 ]; then
	echo "usage: $0 path/to/socks5d" >&2
	exit 2
fi
bin=$1
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/passwd_check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
f=$tmp/users

pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}

fail() {
	echo "FAIL $1"
	[ -s "$tmp/out" ] && sed 's/^/    /' "$tmp/out"
	failed=$((failed + 1))
}

# check DESCRIPTION COMMAND...: the command's output goes to $tmp/out.
check() {
	what=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		pass "$what"
	else
		fail "$what"
	fi
}

# verify FILE NAME PASSWORD PREFIX: NAME's line in FILE is a PREFIX hash of
# PASSWORD, checked by libcrypt's own crypt().
verify() {
	$PY - "$@" <<'EOF'
import ctypes, ctypes.util, sys
path, name, pw, prefix = sys.argv[1:5]
lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
lines = [l for l in open(path).read().splitlines() if l.startswith(name + ":")]
if len(lines) != 1:
    sys.exit("%d lines for %s" % (len(lines), name))
h = lines[0][len(name) + 1:]
if not h.startswith(prefix):
    sys.exit("hash %s does not start with %s" % (h, prefix))
if lib.crypt(pw.encode(), h.encode()) != h.encode():
    sys.exit("crypt(password, hash) != hash")
if lib.crypt(b"wrong", h.encode()) == h.encode():
    sys.exit("a wrong password verifies")
EOF
}

# on_pty OUT ANSWER1 ANSWER2 ARGS...: runs socks5d passwd ARGS on a new
# pseudo-terminal, answers its two prompts, writes what the terminal showed
# to OUT and exits with the command's status.
on_pty() {
	$PY - "$bin" "$@" <<'EOF'
import os, pty, select, sys, time
binary, out, a1, a2 = sys.argv[1:5]
args = sys.argv[5:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "passwd"] + args)
seen = b""
deadline = time.monotonic() + 20
def read_until(token):
    global seen
    while token not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SystemExit("timed out waiting for %r; got %r" % (token, seen))
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            chunk = b""
        if not chunk:
            raise SystemExit("EOF waiting for %r; got %r" % (token, seen))
        seen += chunk
read_until(b"Password: ")
os.write(fd, a1.encode() + b"\n")
read_until(b"Retype password: ")
os.write(fd, a2.encode() + b"\n")
while time.monotonic() < deadline:
    r = select.select([fd], [], [], 0.2)[0]
    if r:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            chunk = b""
        if not chunk:
            break
        seen += chunk
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
else:
    os.kill(pid, 9)
    raise SystemExit("still running after 20 s")
if not done:
    _, status = os.waitpid(pid, 0)
open(out, "wb").write(seen)
sys.exit(os.waitstatus_to_exitcode(status))
EOF
}

not_in() {
	! grep -q -F "$1" "$2"
}

no_temp_files() {
	[ -z "$(find "$tmp" -name '.users.*')" ]
}

if ! $PY -c 'import pty' >/dev/null 2>&1; then
	echo "SKIP passwd: python3 is not installed"
	echo "$passed passed, $failed failed"
	exit 0
fi

# ---- standard input, no file: the line is printed --------------------------
printf 'pipe secret\n' | "$bin" passwd carol >"$tmp/line" 2>"$tmp/out"
check "no -f: the line is printed and verifies (yescrypt)" verify "$tmp/line" carol \
	'pipe secret' '$y$'
printf 'pipe secret\n' | "$bin" passwd -m sha512 carol >"$tmp/line" 2>"$tmp/out"
check "-m sha512: the line verifies with a \$6\$ hash" verify "$tmp/line" carol 'pipe secret' '$6$'
printf '' | "$bin" passwd carol >"$tmp/out" 2>&1
check "an empty password is refused (exit 1)" test $? -eq 1
printf 'x\n' | "$bin" passwd 'bad:name' >"$tmp/out" 2>&1
check "a name with ':' is refused (exit 1)" test $? -eq 1

# ---- a pseudo-terminal: twice, without echo ----------------------------------
printf '# socks5d users\nbob:$6$saltsalt$x\n' >"$f"
chmod 640 "$f"
if [ "$(id -u)" = 0 ]; then
	chown 4321:4322 "$f"
fi
before=$(stat -c '%a %u %g' "$f")
check "pty: socks5d passwd -f FILE alice exits 0" on_pty "$tmp/tty" 's3cret tty' 's3cret tty' \
	-f "$f" alice
check "pty: the password never appears on the terminal" not_in 's3cret' "$tmp/tty"
check "pty: alice's line verifies (yescrypt)" verify "$f" alice 's3cret tty' '$y$'
check "pty: the other lines are kept" grep -q -x -F 'bob:$6$saltsalt$x' "$f"
check "pty: the comment is kept" grep -q -x -F '# socks5d users' "$f"
check "owner and mode kept ($before)" test "$(stat -c '%a %u %g' "$f")" = "$before"
cp "$f" "$tmp/before"
on_pty "$tmp/tty" 'one' 'two' -f "$f" alice >"$tmp/out" 2>&1
check "pty: a mistyped second entry fails (exit 1)" test $? -eq 1
check "pty: ... and leaves the file unchanged" cmp "$f" "$tmp/before"

# ---- standard input: replace, add -------------------------------------------
printf 'piped\n' | "$bin" passwd -f "$f" alice >"$tmp/out" 2>&1
check "stdin: alice replaced" verify "$f" alice 'piped' '$y$'
printf 'dave pw\n' | "$bin" passwd dave -f "$f" >"$tmp/out" 2>&1
check "stdin: NAME before -f: dave added" verify "$f" dave 'dave pw' '$y$'
check "stdin: one line each, in order" test "$(cut -d: -f1 "$f" | tr '\n' ' ')" = \
	"# socks5d users bob alice dave "
check "owner and mode still kept" test "$(stat -c '%a %u %g' "$f")" = "$before"
check "no temporary file left" no_temp_files
printf 'listen 127.0.0.1:1\nusers-file %s\n' "$f" >"$tmp/conf"
check "socks5d -t accepts the file" "$bin" -t -f "$tmp/conf"

# ---- a new file -----------------------------------------------------------------
printf 'new\n' | (umask 022 && "$bin" passwd -f "$tmp/new-users" erin) >"$tmp/out" 2>&1
check "a new file is created with mode 644 (umask 022)" test "$(stat -c %a "$tmp/new-users")" = 644
check "... holding erin's line" verify "$tmp/new-users" erin 'new' '$y$'

# ---- -D -----------------------------------------------------------------------
check "-D alice exits 0" "$bin" passwd -D -f "$f" alice
check "-D: alice is gone" not_in 'alice:' "$f"
check "-D: the others stay" grep -q '^dave:' "$f"
"$bin" passwd -D -f "$f" alice >"$tmp/out" 2>&1
check "-D of a missing user fails (exit 1)" test $? -eq 1
"$bin" passwd -D alice >"$tmp/out" 2>&1
check "-D without -f is a usage error (exit 2)" test $? -eq 2

# ---- a write that fails half-way ----------------------------------------------
# A file larger than RLIMIT_FSIZE allows: writing the temporary copy fails
# (EFBIG; SIGXFSZ ignored) after part of it is written.
i=0
while [ $i -lt 400 ]; do
	echo "user$i:\$6\$saltsalt\$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	i=$((i + 1))
done >>"$f"
cp "$f" "$tmp/before"
(
	trap '' XFSZ
	ulimit -f 16
	printf 'pw\n' | "$bin" passwd -f "$f" frank
) >"$tmp/out" 2>&1
check "a failed write exits 1" test $? -eq 1
check "... the old file is whole" cmp "$f" "$tmp/before"
check "... and no temporary file is left" no_temp_files

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
