/*
 * Unit tests for quota and pct (issue 18): calendar periods (days, Monday
 * weeks, months; at an offset from UTC; each period ending where the next
 * begins), counters (reaching, what is left, a new period from zero), the
 * percent-encoding of names (every byte value), and the state file: a file
 * written and read back gives the same counters, and every prefix of a
 * valid file, and every one-byte change of it, is refused as a whole with
 * nothing handed out. Files are written for real, in a temporary directory,
 * both here and by the forked writer.
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

#include "pct.h"
#include "quota.h"
#include "unit_util.h"

/* 2026-12-06 00:00:00 UTC, a Sunday: day 20793, week 2970. */
#define SUN_0600 ((time_t)1796515200)
#define DAY 86400

/* --- periods ---------------------------------------------------------------- */

static void
test_days_weeks_and_months(void **state)
{
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600, 0), 20793);
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600 - 1, 0), 20792);
	assert_int_equal(quota_period_id(LIMITSET_WEEK, SUN_0600 + DAY - 1, 0), 2970);
	/* Weeks begin on Monday. */
	assert_int_equal(quota_period_id(LIMITSET_WEEK, SUN_0600 + DAY, 0), 2971);
	assert_int_equal(quota_period_id(LIMITSET_WEEK, 0, 0), 0);
	assert_int_equal(quota_period_id(LIMITSET_WEEK, -3 * DAY, 0), 0);
	assert_int_equal(quota_period_id(LIMITSET_WEEK, -3 * DAY - 1, 0), -1);
	assert_int_equal(quota_period_id(LIMITSET_MONTH, SUN_0600, 0), 2026 * 12 + 11);
	assert_int_equal(quota_period_id(LIMITSET_MONTH, (time_t)1798761600, 0), 2027 * 12);
	assert_int_equal(quota_period_id(LIMITSET_MONTH, (time_t)1798761599, 0), 2026 * 12 + 11);
	/* At +05:30 the day begins 5.5 hours earlier in UTC. */
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600 - 330 * 60, 330), 20793);
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600 - 330 * 60 - 1, 330), 20792);
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600 + 600 * 60, -600), 20793);
	assert_int_equal(quota_period_id(LIMITSET_DAY, SUN_0600 + 600 * 60 - 1, -600), 20792);
	/* 2026-12-31 23:30 UTC is already January at +01:00. */
	assert_int_equal(quota_period_id(LIMITSET_MONTH, (time_t)1798759800, 60), 2027 * 12);
}

/* Each period ends exactly where the next begins, whatever the offset. */
static void
test_a_period_ends_where_the_next_begins(void **state)
{
	static const int offsets[] = { 0, 60, -60, 330, -840, 840 };
	static const enum limitset_period periods[] = { LIMITSET_DAY, LIMITSET_WEEK,
		LIMITSET_MONTH };

	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++)
		for (size_t p = 0; p < 3; p++)
			for (time_t t = SUN_0600 - 400 * DAY; t < SUN_0600 + 400 * DAY;
				t += 7 * 3600 + 13) {
				int64_t id = quota_period_id(periods[p], t, offsets[o]);
				time_t end = quota_period_end(periods[p], id, offsets[o]);
				assert_true(end > t);
				assert_int_equal(quota_period_id(periods[p], end - 1, offsets[o]),
					id);
				assert_int_equal(quota_period_id(periods[p], end, offsets[o]),
					id + 1);
			}
}

static void
test_counters(void **state)
{
	struct quota_counter q;

	memset(&q, 0, sizeof(q));
	q.limit = 1000;
	assert_true(quota_roll(&q, 5));
	assert_false(quota_roll(&q, 5));
	assert_false(quota_add(&q, 999));
	assert_true(quota_left(&q) == 1);
	assert_true(quota_add(&q, 1));
	assert_true(q.reached);
	assert_false(quota_add(&q, 10));
	assert_true(quota_left(&q) == 0);
	assert_true(q.used == 1010);
	assert_true(quota_roll(&q, 6));
	assert_false(q.reached);
	assert_true(q.used == 0);
	quota_set_used(&q, 2000);
	assert_true(q.reached);
	quota_set_used(&q, 0);
	assert_false(q.reached);
	q.limit = 0;
	assert_false(quota_add(&q, UINT64_MAX));
	assert_true(quota_add(&q, 5) == false && q.used == UINT64_MAX);
	assert_true(quota_left(&q) == UINT64_MAX);
}

/* --- names -------------------------------------------------------------------- */

static void
test_every_byte_value_round_trips_through_pct(void **state)
{
	uint8_t all[256], back[256];
	char enc[PCT_ENCODED_SIZE(256)];

	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	pct_encode(all, sizeof(all), enc, sizeof(enc));
	for (const char *p = enc; *p; p++)
		assert_true(*p > 0x20 && *p < 0x7f);
	assert_int_equal(pct_decode(enc, strlen(enc), back, sizeof(back)), 256);
	assert_memory_equal(all, back, 256);
	assert_int_equal(pct_decode("a%2", 3, back, sizeof(back)), -1);
	assert_int_equal(pct_decode("a%zz", 4, back, sizeof(back)), -1);
	assert_int_equal(pct_decode("a b", 3, back, sizeof(back)), -1);
	assert_int_equal(pct_decode("abc", 3, back, 2), -1);
	assert_int_equal(pct_decode("%41%62", 6, back, sizeof(back)), 2);
	assert_memory_equal(back, "Ab", 2);
	/* Cut at a whole escape when out of room. */
	pct_encode((const uint8_t *)"a b", 3, enc, 4);
	assert_string_equal(enc, "a");
}

/* --- the state file -------------------------------------------------------------- */

struct got {
	struct quota_entry e[8];
	size_t n;
};

static void
collect(const struct quota_entry *e, void *arg)
{
	struct got *g = arg;

	assert_true(g->n < 8);
	g->e[g->n++] = *e;
}

static struct quota_entry
entry(char scope, const char *name, enum limitset_period p, int64_t id, uint64_t used)
{
	struct quota_entry e;

	memset(&e, 0, sizeof(e));
	e.scope = scope;
	e.name_len = strlen(name);
	memcpy(e.name, name, e.name_len);
	e.period = p;
	e.period_id = id;
	e.used = used;
	return e;
}

/* A file with three counters (a name with a space and a '%'). */
static char *
sample_text(size_t *len)
{
	struct quota_writer w;
	struct quota_entry e;
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	assert_non_null(f);
	quota_state_begin(&w, f);
	e = entry('u', "alice", LIMITSET_MONTH, 24323, 50000000000ULL);
	quota_state_add(&w, &e);
	e = entry('u', "b b%", LIMITSET_WEEK, -1, 1);
	quota_state_add(&w, &e);
	e = entry('c', "2001:db8::/64", LIMITSET_DAY, 20793, UINT64_MAX);
	quota_state_add(&w, &e);
	quota_state_end(&w);
	assert_int_equal(fclose(f), 0);
	return text;
}

static void
test_state_file_round_trip(void **state)
{
	size_t len, line = 0;
	char *text = sample_text(&len);
	struct got g = { .n = 0 };

	assert_non_null(strstr(text,
		"socks5d-quota-state 1\nuser alice month 24323 50000000000\n"
		"user b%20b%25 week -1 1\nclient 2001:db8::/64 day 20793 "
		"18446744073709551615\nend 3 "));
	assert_int_equal(quota_state_parse(text, len, 100, collect, &g, &line), QUOTA_STATE_OK);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.e[0].name, "alice");
	assert_int_equal(g.e[0].scope, 'u');
	assert_int_equal(g.e[0].period, LIMITSET_MONTH);
	assert_int_equal(g.e[0].period_id, 24323);
	assert_true(g.e[0].used == 50000000000ULL);
	assert_string_equal(g.e[1].name, "b b%");
	assert_int_equal(g.e[1].period_id, -1);
	assert_int_equal(g.e[2].scope, 'c');
	assert_true(g.e[2].used == UINT64_MAX);
	g.n = 0;
	assert_int_equal(quota_state_parse(text, len, 2, collect, &g, &line), QUOTA_STATE_TOO_MANY);
	assert_int_equal(g.n, 0);
	free(text);
}

/* A file cut anywhere, or a byte changed anywhere, is refused as a whole:
 * counting starts from zero rather than from half a file. */
static void
test_every_prefix_and_every_changed_byte_is_refused(void **state)
{
	size_t len, line;
	char *text = sample_text(&len);
	struct got g = { .n = 0 };

	for (size_t n = 0; n < len; n++) {
		char *cut = (char *)unit_copy((const uint8_t *)text, n);
		enum quota_state_status st = quota_state_parse(cut, n, 100, collect, &g, &line);
		if (st == QUOTA_STATE_OK)
			fail_msg("the first %zu of %zu bytes were accepted", n, len);
		assert_int_equal(g.n, 0);
		free(cut);
	}
	for (size_t i = 0; i < len; i++) {
		char *bad = (char *)unit_copy((const uint8_t *)text, len);
		bad[i] = bad[i] == 'x' ? 'y' : 'x';
		if (quota_state_parse(bad, len, 100, collect, &g, &line) == QUOTA_STATE_OK)
			fail_msg("byte %zu changed was accepted", i);
		assert_int_equal(g.n, 0);
		free(bad);
	}
	free(text);
}

static void
test_state_file_errors(void **state)
{
	size_t line = 0;
	struct got g = { .n = 0 };
	const char *h = "socks5d-quota-state 1\n";
	char buf[256];

	assert_int_equal(quota_state_parse("", 0, 10, collect, &g, &line), QUOTA_STATE_TRUNCATED);
	assert_int_equal(quota_state_parse("hello\n", 6, 10, collect, &g, &line),
		QUOTA_STATE_BAD_HEADER);
	snprintf(buf, sizeof(buf), "%suser alice month 1\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_BAD_LINE);
	assert_int_equal(line, 2);
	snprintf(buf, sizeof(buf), "%suser alice year 1 2\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_BAD_LINE);
	snprintf(buf, sizeof(buf), "%suser  alice month 1 2\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_BAD_LINE);
	snprintf(buf, sizeof(buf), "%suser %%00 month 1 2\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_BAD_LINE);
	snprintf(buf, sizeof(buf), "%suser alice month 1 2\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_TRUNCATED);
	snprintf(buf, sizeof(buf), "%send 0 0000000000000000\n", h);
	assert_int_equal(quota_state_parse(buf, strlen(buf), 10, collect, &g, &line),
		QUOTA_STATE_BAD_END);
	assert_int_equal(g.n, 0);
	assert_string_equal(quota_state_status_str(QUOTA_STATE_BAD_END),
		"count or checksum does not match");
}

/* Written in place, and by a forked child; read back the same. */
static void
test_save_writes_the_file_atomically(void **state)
{
	char dir[] = "/tmp/test_quota.XXXXXX", path[64], tmp[80], back[4096];
	size_t len, line, n;
	char *text = sample_text(&len);
	struct got g = { .n = 0 };
	struct stat st;
	pid_t child = 0;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, QUOTA_STATE_FILE);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, QUOTA_STATE_FILE);
	assert_int_equal(quota_state_save(dir, text, len, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(quota_state_save(dir, "x", 1, &child), 0);
	assert_true(child > 0);
	assert_true(quota_state_reap(&child, true));
	assert_int_equal(child, 0);
	assert_true(quota_state_reap(&child, false));
	assert_int_equal(quota_state_save(dir, text, len, &child), 0);
	assert_true(quota_state_reap(&child, true));
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(back, 1, sizeof(back), f);
	fclose(f);
	assert_int_equal(n, len);
	assert_int_equal(quota_state_parse(back, n, 10, collect, &g, &line), QUOTA_STATE_OK);
	assert_int_equal(g.n, 3);
	assert_int_equal(access(tmp, F_OK), -1);
	/* A directory that is not there: an error, nothing left behind. */
	assert_int_equal(quota_state_save("/nonexistent-socks5d-dir", text, len, NULL), -1);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_days_weeks_and_months),
		cmocka_unit_test(test_a_period_ends_where_the_next_begins),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_every_byte_value_round_trips_through_pct),
		cmocka_unit_test(test_state_file_round_trip),
		cmocka_unit_test(test_every_prefix_and_every_changed_byte_is_refused),
		cmocka_unit_test(test_state_file_errors),
		cmocka_unit_test(test_save_writes_the_file_atomically),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
