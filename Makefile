# socks5d — see README.md. `make` builds build/socks5d; `make test` runs every
# test; `make run` runs the daemon on its built-in default (127.0.0.1:1080).

CC       ?= cc
CFLAGS   ?= -O2 -g
WARNINGS  = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter
CPPFLAGS += -Iinclude -D_GNU_SOURCE
# The one version string: -V, debian/changelog and the man pages' .Os line
# (tests/docs_check.sh checks that they agree).
VERSION  := $(shell cat VERSION)
LDLIBS   += -lcrypt
WERROR   ?=
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
B        := build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
B        := build
SANFLAGS :=
endif

ALL_CFLAGS = -std=c17 $(CFLAGS) $(WARNINGS) $(if $(WERROR),-Werror) $(SANFLAGS)
# Dependency files only where one source makes one object; binaries linked
# from several sources list the headers instead.
DEPFLAGS   = -MMD -MP
HEADERS   := $(wildcard include/*.h)

SRCS      := $(wildcard src/*.c)
OBJS      := $(patsubst src/%.c,$(B)/obj/%.o,$(SRCS))
LIB_OBJS  := $(filter-out $(B)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,$(B)/fuzz-replay/%,$(FUZZ_SRCS))
ITEST_SRCS := $(wildcard tests/integration/*.c)
ITEST_BIN := $(B)/tests/integration

.PHONY: install uninstall deb
.PHONY: all run test test-deps unit-tests fuzz-replay integration-tests fuzz fuzz-smoke \
        docs-check clean bench bench-tools

all: $(B)/socks5d

$(B)/socks5d: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/obj/%.o: src/%.c | $(B)/obj
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(B)/obj/main.o: CPPFLAGS += -DSOCKS5D_VERSION='"$(VERSION)"'
$(B)/obj/main.o: VERSION

$(B)/obj $(B)/tests $(B)/fuzz-replay build/fuzz:
	mkdir -p $@

run: $(B)/socks5d
	./$(B)/socks5d

# --- tests -----------------------------------------------------------------
test-deps:
	@sh tests/install-deps.sh

# Link-time wrapping (STYLE §10) for tests that need a library call
# replaced: TEST_LDFLAGS_<module>.
TEST_LDFLAGS_log = -Wl,--wrap=syslog

$(B)/tests/test_%: tests/unit/test_%.c $(LIB_OBJS) $(HEADERS) $(wildcard tests/unit/*.h) | $(B)/tests
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) $(TEST_LDFLAGS_$*) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lcmocka

$(B)/fuzz-replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(LIB_OBJS) $(HEADERS) | $(B)/fuzz-replay
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

$(ITEST_BIN): $(ITEST_SRCS) $(wildcard tests/integration/*.h) $(LIB_OBJS) $(HEADERS) | $(B)/tests
	$(CC) $(CPPFLAGS) -Itests/integration $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(ITEST_SRCS) $(LIB_OBJS) $(LDLIBS) -lcmocka

# test_udpassoc sees (and fails on demand) the sendmmsg calls of udpassoc.
$(B)/tests/test_udpassoc: LDFLAGS += -Wl,--wrap=sendmmsg

unit-tests: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ./$$t; done

fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for t in $(FUZZ_REPLAY); do n=$$(basename $$t); n=$${n#fuzz_}; \
	  echo "== $$t tests/fuzz/corpus/$$n"; ./$$t tests/fuzz/corpus/$$n; done

integration-tests: $(B)/socks5d $(ITEST_BIN)
	SOCKS5D=$(B)/socks5d ./$(ITEST_BIN)
	sh tests/integration/real_clients.sh $(B)/socks5d

# The integration suite with a hostile /etc/resolv.conf (timeout:1
# attempts:1, nobody answering) in a private mount namespace: nothing may
# depend on the host's resolver. Root, or unprivileged user namespaces.
.PHONY: test-hermetic
test-hermetic: $(B)/socks5d $(ITEST_BIN)
	sh tests/hermetic.sh $(MAKE) --no-print-directory integration-tests

# socks5d passwd from a pseudo-terminal and from standard input.
.PHONY: passwd-check
passwd-check: $(B)/socks5d
	sh tests/passwd_check.sh $(B)/socks5d

# The integration suite with the daemon under valgrind (slow: run by CI, not
# by `make test`).
.PHONY: memcheck
memcheck: $(B)/socks5d $(ITEST_BIN)
	SOCKS5D=tests/memcheck.sh MEMCHECK_BIN=$(B)/socks5d IT_SLOW=1 ./$(ITEST_BIN)

# make install/uninstall into a temporary DESTDIR, and the installed tree.
.PHONY: install-check
install-check:
	sh tests/install_check.sh

docs-check: $(B)/socks5d
	sh tests/docs_check.sh $(B)/socks5d

# Static analysis: cppcheck, then clang-tidy with the checks in .clang-tidy,
# one file per job (LINT_JOBS at a time). Any finding fails the target; fix
# it, or suppress it where it occurs with NOLINT(check): reason.
LINT_JOBS  ?= 2
# cppcheck does not read system headers: it is given libc's list macros.
QUEUE_H    := $(firstword $(wildcard /usr/include/*/sys/queue.h /usr/include/sys/queue.h))
LINT_FLAGS  = -std=c17 $(CPPFLAGS)
FORMAT_FILES := $(wildcard src/*.c src/*.h include/*.h tests/unit/*.c tests/unit/*.h \
		tests/integration/*.c tests/integration/*.h tests/fuzz/*.c tests/bench/*.c)
.PHONY: lint format
format:
	clang-format -i $(FORMAT_FILES)

lint:
	clang-format --dry-run -Werror $(FORMAT_FILES)
	sh tests/funclen.sh 80 $(SRCS)
	cppcheck --quiet --enable=warning,performance,portability --std=c11 -D_GNU_SOURCE \
		-Iinclude --suppress=missingIncludeSystem --error-exitcode=1 --inline-suppr \
		--include=$(QUEUE_H) src/ tests/bench/
	@printf '%s\n' $(SRCS) $(wildcard tests/bench/*.c) | xargs -P$(LINT_JOBS) -I{} sh -c \
		'out=$$(clang-tidy --quiet "$$1" -- $(LINT_FLAGS) 2>&1); rc=$$?; \
		printf "%s\n" "$$out" | grep -v -e "^[0-9]* warnings* generated\.$$" -e "^$$"; \
		exit $$rc' sh {} || { echo "lint: clang-tidy findings above" >&2; exit 1; }

test: test-deps
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory bench-tools
	$(MAKE) --no-print-directory unit-tests
	$(MAKE) --no-print-directory fuzz-replay
	$(MAKE) --no-print-directory docs-check
	$(MAKE) --no-print-directory integration-tests
	$(MAKE) --no-print-directory passwd-check
	$(MAKE) --no-print-directory install-check

# --- benchmark: timing, so never part of `make test` ------------------------
# BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_MODES, BENCH_BASELINE (an A/B
# against another socks5d build) and BENCH_PEERS tune it; see tests/bench/run.sh.
bench: $(B)/socks5d
	sh tests/bench/run.sh $(B)/socks5d

# run.sh builds its own copy; `make test` builds it here under the
# project's warnings (and sanitizers) so that it keeps compiling.
bench-tools: $(B)/bench/loadgen $(B)/bench/authload

$(B)/bench/%: tests/bench/%.c | $(B)/bench
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(B)/bench:
	mkdir -p $@

# --- fuzzing with libFuzzer (clang) -----------------------------------------
FUZZ_CFLAGS = -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS)
FUZZ_LIB_SRCS := $(filter-out src/main.c,$(SRCS))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 60

# The daemon's sources are compiled once for every target (with
# fuzzer-no-link: instrumented, without libFuzzer's main), then each target
# links them with its own fuzz_*.c.
FUZZ_OBJS := $(patsubst src/%.c,build/fuzz/obj/%.o,$(FUZZ_LIB_SRCS))
build/fuzz/obj:
	mkdir -p $@
FUZZ_OBJ_CFLAGS = -std=c17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined $(CPPFLAGS)
build/fuzz/obj/%.o: src/%.c $(HEADERS) $(wildcard src/*.h) | build/fuzz/obj
	clang $(FUZZ_OBJ_CFLAGS) -c -o $@ $<
.SECONDARY: $(FUZZ_OBJS)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS) | build/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

fuzz: $(FUZZ_BINS)

fuzz-smoke: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_BINS); do n=$$(basename $$t); n=$${n#fuzz_}; \
	  mkdir -p build/fuzz/work/$$n; \
	  echo "== $$t ($(FUZZ_SECONDS)s)"; \
	  ./$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build/fuzz/work/$$n tests/fuzz/corpus/$$n; done

# --- install ------------------------------------------------------------------
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system

install: $(B)/socks5d
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/socks5d
	install -m 755 $(B)/socks5d $(DESTDIR)$(SBINDIR)/socks5d
	install -m 644 man/socks5d.8 $(DESTDIR)$(MANDIR)/man8/socks5d.8
	install -m 644 man/socks5d.conf.5 $(DESTDIR)$(MANDIR)/man5/socks5d.conf.5
	sed 's|/usr/local/sbin|$(SBINDIR)|g' contrib/systemd/socks5d.service \
		> $(DESTDIR)$(UNITDIR)/socks5d.service
	chmod 644 $(DESTDIR)$(UNITDIR)/socks5d.service
	install -m 644 contrib/systemd/socks5d.socket $(DESTDIR)$(UNITDIR)/socks5d.socket
	@# An administrator's configuration is never overwritten.
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/socks5d/socks5d.conf ]; then \
		install -m 644 socks5d.conf.example $(DESTDIR)$(SYSCONFDIR)/socks5d/socks5d.conf; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/socks5d $(DESTDIR)$(MANDIR)/man8/socks5d.8 \
		$(DESTDIR)$(MANDIR)/man5/socks5d.conf.5 $(DESTDIR)$(UNITDIR)/socks5d.service \
		$(DESTDIR)$(UNITDIR)/socks5d.socket
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/socks5d (configuration)"

# --- Debian package -------------------------------------------------------------
# Builds in a copy under build/deb (the source tree stays clean): the source
# package (dpkg-source -b), then `dpkg-buildpackage -us -uc -b`, then lintian
# on both, which must report no error and no warning (overrides, each with
# its reason, are in debian/socks5d.lintian-overrides). The .deb is
# build/deb/socks5d_$(VERSION)_ARCH.deb. DEB_BUILD_OPTIONS=nocheck skips the
# unit tests inside the package build.
DEB_DIR := build/deb
.PHONY: deb
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/socks5d-$(VERSION)
	tar -c --exclude=./build --exclude=./.git . | tar -x -C $(DEB_DIR)/socks5d-$(VERSION)
	cd $(DEB_DIR) && dpkg-source -b socks5d-$(VERSION)
	cd $(DEB_DIR)/socks5d-$(VERSION) && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning $(DEB_DIR)/*.deb $(DEB_DIR)/*.dsc

# As root, on a machine without socks5d installed: dpkg -i the package,
# check what it installed, dpkg -r, dpkg -P (tests/deb_check.sh). CI runs it.
.PHONY: deb-check
deb-check: deb
	sh tests/deb_check.sh $(DEB_DIR)/socks5d_$(VERSION)_$$(dpkg --print-architecture).deb

clean:
	rm -rf build

-include $(wildcard $(B)/obj/*.d)
