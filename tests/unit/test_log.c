/*
 * test_log: nothing a client sends can forge a log line (issue 17). The
 * one escaping function for client strings (every byte value, the cut at
 * the buffer's end), and the line writer keeping every line one line in
 * all three modes: stderr, journal (JOURNAL_STREAM) and syslog (syslog(3)
 * is wrapped at link time: -Wl,--wrap=syslog, see the Makefile).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* The forged session record of the issue: a quote, a newline, a record. */
static const char forged[] = "x\" from 1.2.3.4\ninfo: session id=1 proto=socks5 "
			     "client=1.2.3.4:1 user=admin cmd=connect\n<0>emergency";

/* --- syslog(3), captured --------------------------------------------------- */

void __wrap_syslog(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char syslog_last[4096];
static unsigned syslog_calls;

void
__wrap_syslog(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(syslog_last, sizeof(syslog_last), fmt, ap);
	va_end(ap);
	syslog_calls++;
}

/* --- log_escape ------------------------------------------------------------ */

static void
test_escape_every_byte(void **state)
{
	char out[8], want[8];

	for (unsigned b = 0; b < 256; b++) {
		unsigned char c = (unsigned char)b;
		log_escape(&c, 1, out, sizeof(out));
		if (b > 0x20 && b < 0x7f && b != '"' && b != '\\')
			snprintf(want, sizeof(want), "%c", (char)b);
		else
			snprintf(want, sizeof(want), "\\x%02x", b);
		assert_string_equal(out, want);
	}
}

static void
test_escape_keeps_names_and_marks_the_cut(void **state)
{
	char out[16];

	assert_string_equal(log_escape("alice", 5, out, sizeof(out)), "alice");
	assert_string_equal(log_escape("a b", 3, out, sizeof(out)), "a\\x20b");
	/* 15 bytes of room: what does not fit ends in "...", never a half
	 * \xHH. */
	assert_string_equal(log_escape("abcdefghijklmnopqrstuvwxyz", 26, out, sizeof(out)),
		"abcdefghijkl...");
	assert_string_equal(log_escape("\n\n\n\n\n", 5, out, sizeof(out)), "\\x0a\\x0a\\x0a...");
	assert_string_equal(log_escape("", 0, out, sizeof(out)), "");
	assert_string_equal(log_escape("\0a", 2, out, sizeof(out)), "\\x00a");
	/* All 255 bytes of a field fit LOG_ESCAPED_SIZE. */
	{
		char big[LOG_ESCAPED_SIZE(255)];
		unsigned char all[255];
		for (unsigned i = 0; i < 255; i++)
			all[i] = (unsigned char)(i + 1);
		log_escape(all, sizeof(all), big, sizeof(big));
		assert_null(strstr(big, "..."));
		assert_null(strchr(big, '\n'));
	}
}

/* --- the line writer --------------------------------------------------------- */

/* Runs the writer with stderr on a temp file; returns what it wrote. */
static char *
capture_stderr(bool journal, void (*write_lines)(void))
{
	char path[] = "/tmp/test_log.XXXXXX", env[64];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct stat st;
	static char buf[65536];
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(env, sizeof(env), "%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
	if (journal)
		setenv("JOURNAL_STREAM", env, 1);
	else
		unsetenv("JOURNAL_STREAM");
	log_init(LOG_LVL_DEBUG);
	write_lines();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	close(fd);
	unlink(path);
	unsetenv("JOURNAL_STREAM");
	log_init(LOG_LVL_ERROR);
	return buf;
}

static void
write_hostile_lines(void)
{
	char u[LOG_ESCAPED_SIZE(sizeof(forged))];

	/* Escaped, as the daemon does with client strings... */
	log_warnx("authentication failed for user \"%s\"",
		log_escape(forged, strlen(forged), u, sizeof(u)));
	/* ...and raw: the writer itself still keeps it one line. */
	log_info("raw %s", forged);
	log_debug("every byte but NUL: %s", "\x01\x02\r\n\x1b[31m\x7f\xff");
}

/* Every line starts with the writer's own prefix: nothing in the text
 * began a line of its own. */
static void
assert_lines(const char *out, const char *prefix, unsigned want_lines)
{
	unsigned lines = 0;

	for (const char *p = out; *p; lines++) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl);
		if (strncmp(p, prefix, strlen(prefix)) != 0)
			fail_msg("line %u does not start with the writer's prefix: %.*s", lines + 1,
				(int)(nl - p), p);
		p = nl + 1;
	}
	assert_int_equal(lines, want_lines);
}

static void
test_stderr_lines_stay_one_line(void **state)
{
	char *out = capture_stderr(false, write_hostile_lines);

	/* "2026-12-06T..." : every line starts with a year. */
	assert_lines(out, "20", 3);
	assert_non_null(strstr(out, "user \"x\\x22\\x20from"));
}

static void
test_journal_lines_stay_one_line(void **state)
{
	char *out = capture_stderr(true, write_hostile_lines);

	/* warn <4>, info <6>, debug <7>: no "<0>" of the client's. */
	assert_non_null(strstr(out, "<4>warn: "));
	assert_null(strstr(out, "\n<0>"));
	assert_lines(out, "<", 3);
}

static void
test_syslog_messages_stay_one_line(void **state)
{
	char u[LOG_ESCAPED_SIZE(sizeof(forged))];

	log_init(LOG_LVL_DEBUG);
	log_use_syslog(true);
	syslog_calls = 0;
	log_warnx("authentication failed for user \"%s\"",
		log_escape(forged, strlen(forged), u, sizeof(u)));
	assert_int_equal(syslog_calls, 1);
	assert_null(strchr(syslog_last, '\n'));
	log_info("raw %s", forged);
	assert_int_equal(syslog_calls, 2);
	assert_null(strchr(syslog_last, '\n'));
	assert_null(strchr(syslog_last, '\r'));
	log_use_syslog(false);
	log_init(LOG_LVL_ERROR);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_every_byte),
		cmocka_unit_test(test_escape_keeps_names_and_marks_the_cut),
		cmocka_unit_test(test_stderr_lines_stay_one_line),
		cmocka_unit_test(test_journal_lines_stay_one_line),
		cmocka_unit_test(test_syslog_messages_stay_one_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
