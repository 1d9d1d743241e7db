#!/bin/sh
# Runs the daemon under valgrind memcheck for `make memcheck`: the
# integration suite starts this script in place of the binary
# (SOCKS5D=tests/memcheck.sh) and MEMCHECK_BIN names the real one. Any
# memory error or definite leak makes the daemon exit 99, which the suite
# reports as an unclean exit.
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--track-fds=no "${MEMCHECK_BIN:-build/socks5d}" "$@"
