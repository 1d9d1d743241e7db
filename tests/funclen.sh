#!/bin/sh
# funclen.sh MAX FILE...: fails (exit 1) naming every function definition
# longer than MAX lines. Definitions are found the way the code is laid out
# (.clang-format): the name at the start of a line, the body's braces in
# column 0.
max=$1
shift
awk -v max="$max" '
FNR == 1 { name = ""; infn = 0 }
/^[a-z_][a-z0-9_]*\(/ { name = $0; sub(/\(.*/, "", name); start = FNR }
/^\{/ { if (name != "") infn = 1 }
/^\}/ {
	if (infn && FNR - start + 1 > max) {
		printf "%s:%d: %s is %d lines (at most %d)\n", FILENAME, start, name, FNR - start + 1, max
		bad = 1
	}
	infn = 0
	name = ""
}
END { exit bad }' "$@"
