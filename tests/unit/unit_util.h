/*
 * unit_util: what several unit tests need the same way, written once.
 * - Driving a real loop: unit_run_until runs iterations until a predicate
 *   holds, bounded in wall time and in iterations, so a stall fails the test
 *   instead of hanging it; unit_run_for runs them for a stretch of time.
 * - Parsers at every split (STYLE §10): a parser is described once in a
 *   struct unit_parser; unit_assert_parses_at_every_split and
 *   unit_assert_error_from walk every prefix of a message through it, and
 *   unit_each_prefix hands every prefix to a check of the caller's own.
 *   Every prefix is parsed from a heap copy of exactly its length, so a
 *   parser that reads past what it was given fails under ASan.
 * - FNV-1a 64 (unit_fnv) for tests that check a stream arrived intact.
 * - Small fixtures: what a dump function prints as a string (unit_capture),
 *   an address from text (unit_addr).
 * Header only (static inline), so a test binary is still one .c file.
 */
#ifndef SOCKS5D_UNIT_UTIL_H
#define SOCKS5D_UNIT_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "loop.h"
#include "net.h"

/* --- driving the loop ------------------------------------------------------ */

#define UNIT_RUN_MAX_ITER 1000000u /* iterations per run, whatever the clock says */
#define UNIT_RUN_WAIT_MS 1         /* unit_run_until's wait per iteration */

typedef bool (*unit_pred_cb)(void *arg);

/* Monotonic wall-clock milliseconds (not the loop's cached "now"). */
static inline uint64_t
unit_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Runs loop iterations until pred(arg) holds: true then, false when max_ms
 * of wall time or UNIT_RUN_MAX_ITER iterations ran out first. pred is asked
 * before each iteration and once more at the end; each iteration waits at
 * most UNIT_RUN_WAIT_MS, so a predicate may also watch the test's own
 * sockets, which are not in the loop. A failing loop_run_once fails the test.
 */
static inline bool
unit_run_until(struct loop *loop, unit_pred_cb pred, void *arg, unsigned max_ms)
{
	uint64_t deadline = unit_wall_ms() + max_ms;

	for (unsigned i = 0; i < UNIT_RUN_MAX_ITER && unit_wall_ms() < deadline; i++) {
		if (pred(arg))
			return true;
		assert_int_equal(loop_run_once(loop, UNIT_RUN_WAIT_MS), 0);
	}
	return pred(arg);
}

/*
 * Runs loop iterations, each waiting at most wait_ms, for ms of wall time
 * (at least one, at most UNIT_RUN_MAX_ITER). Returns how many ran: a loop
 * that sleeps through its waits makes about ms / wait_ms, a spinning one
 * far more.
 */
static inline unsigned
unit_run_for(struct loop *loop, unsigned ms, int wait_ms)
{
	uint64_t start = unit_wall_ms();
	unsigned n = 0;

	do {
		assert_int_equal(loop_run_once(loop, wait_ms), 0);
		n++;
	} while (n < UNIT_RUN_MAX_ITER && unit_wall_ms() - start < ms);
	return n;
}

/* --- parsers at every split -------------------------------------------------- */

#define UNIT_POISON 0xA5 /* fills a result before each parse */

/* Parses p[0..len) into out; returns the parser's status, and on success
 * sets *consumed. */
typedef int (*unit_parse_cb)(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg);
/* Names a status in failure messages. */
typedef const char *(*unit_status_str_cb)(int status, void *arg);
/* Checks the prefix p[0..len) of a message (asserts what it must). */
typedef void (*unit_prefix_cb)(const uint8_t *p, size_t len, void *arg);

/* A parser under test, as the split helpers see it. */
struct unit_parser {
	unit_parse_cb parse;
	unit_status_str_cb status_str;
	void *arg;           /* passed to both */
	int ok;              /* the status of a complete message */
	int need_more;       /* the status of a strict prefix */
	size_t out_size;     /* bytes of a result: poisoned, then compared */
	const uint8_t *next; /* what follows a message on the wire (pipelined) */
	size_t next_len;
	bool clean_unless_ok; /* any status but ok sets *consumed to 0 and
	                          * leaves the result as it was */
};

/* A heap copy of p[0..len), exactly len bytes (ASan sees reads past it). */
static inline uint8_t *
unit_copy(const uint8_t *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	assert_non_null(c);
	if (len)
		memcpy(c, p, len);
	return c;
}

/*
 * Calls check(prefix, n, arg) for every n with from <= n < to, the prefix
 * an exact-length heap copy of msg[0..n).
 */
static inline void
unit_each_prefix(const uint8_t *msg, size_t from, size_t to, unit_prefix_cb check, void *arg)
{
	for (size_t n = from; n < to; n++) {
		uint8_t *c = unit_copy(msg, n);

		check(c, n, arg);
		free(c);
	}
}

/* Parses msg[0..len) (from an exact-length copy) into a poisoned result,
 * with *consumed poisoned too, so untouched fields compare equal between
 * runs and touched ones must match exactly. Returns the parser's status. */
static inline int
unit_parse_poisoned(const struct unit_parser *p, const uint8_t *msg, size_t len, void *out,
	size_t *consumed)
{
	uint8_t *c = unit_copy(msg, len);
	int st;

	memset(out, UNIT_POISON, p->out_size);
	*consumed = (size_t)-1;
	st = p->parse(c, len, out, consumed, p->arg);
	free(c);
	return st;
}

/* After a status other than ok: with clean_unless_ok, nothing was written. */
static inline void
unit_assert_clean(const struct unit_parser *p, const void *got, size_t consumed)
{
	uint8_t *poison;

	if (!p->clean_unless_ok)
		return;
	poison = malloc(p->out_size);
	assert_non_null(poison);
	memset(poison, UNIT_POISON, p->out_size);
	assert_int_equal(consumed, 0);
	assert_memory_equal(got, poison, p->out_size);
	free(poison);
}

/*
 * The core property of an incremental parser (one that parses all it has
 * buffered again when more arrives): OK with *consumed == len for the
 * whole message; the same result with the next message behind it
 * (p->next); need_more for every strict prefix, that is, for what it holds
 * after the first part of every two-part split (the empty one too) and
 * after each byte when the message comes one byte at a time; and, once
 * the rest has arrived, the same result as the whole. Returns the parse of
 * the whole message in *whole (p->out_size bytes).
 */
static inline void
unit_assert_parses_at_every_split(const struct unit_parser *p, const uint8_t *msg, size_t len,
	void *whole)
{
	uint8_t *buf = malloc(len + p->next_len);
	void *got = malloc(p->out_size);
	size_t consumed;

	assert_non_null(buf);
	assert_non_null(got);
	assert_int_equal(unit_parse_poisoned(p, msg, len, whole, &consumed), p->ok);
	assert_int_equal(consumed, len);

	/* Pipelined: bytes of the next message must not change anything. */
	memcpy(buf, msg, len);
	if (p->next_len)
		memcpy(buf + len, p->next, p->next_len);
	assert_int_equal(unit_parse_poisoned(p, buf, len + p->next_len, got, &consumed), p->ok);
	assert_int_equal(consumed, len);
	assert_memory_equal(got, whole, p->out_size);

	for (size_t k = 0; k < len; k++) {
		int st = unit_parse_poisoned(p, msg, k, got, &consumed);

		if (st != p->need_more)
			print_error("split after byte %zu of %zu: %s\n", k, len,
				p->status_str(st, p->arg));
		assert_int_equal(st, p->need_more);
		unit_assert_clean(p, got, consumed);
		/* The second part arrives, with the next message behind it. */
		assert_int_equal(unit_parse_poisoned(p, buf, len + p->next_len, got, &consumed),
			p->ok);
		assert_int_equal(consumed, len);
		assert_memory_equal(got, whole, p->out_size);
	}
	free(got);
	free(buf);
}

/*
 * A malformed message must be need_more until its offending byte at index
 * bad arrives and the specific error want from then on, however much
 * follows: the caller answers as soon as it can, without waiting for bytes
 * that a hostile peer may never send.
 */
static inline void
unit_assert_error_from(const struct unit_parser *p, const uint8_t *msg, size_t len, size_t bad,
	int want)
{
	void *got = malloc(p->out_size);
	size_t consumed;

	assert_non_null(got);
	assert_true(bad < len);
	for (size_t i = 0; i <= len; i++) {
		int st = unit_parse_poisoned(p, msg, i, got, &consumed);
		int exp = i <= bad ? p->need_more : want;

		if (st != exp)
			print_error("prefix %zu of %zu (bad byte %zu): got %s, want %s\n", i, len,
				bad, p->status_str(st, p->arg), p->status_str(exp, p->arg));
		assert_int_equal(st, exp);
		unit_assert_clean(p, got, consumed);
	}
	free(got);
}

/* --- hashing ------------------------------------------------------------------ */

#define UNIT_FNV_OFFSET 0xcbf29ce484222325ULL /* start value of a FNV-1a 64 hash */

/* FNV-1a 64 of p[0..n) continued from h. */
static inline uint64_t
unit_fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* --- small fixtures ------------------------------------------------------------ */

/* Prints arg to f without changing it (a module's dump function, adapted). */
typedef void (*unit_write_cb)(FILE *f, const void *arg);

/* What write(f, arg) prints, as a NUL-terminated string the caller frees. */
static inline char *
unit_capture(unit_write_cb write, const void *arg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	write(f, arg);
	assert_int_equal(fclose(f), 0);
	return text;
}

/* The address ip (IPv4 or IPv6 text) with port; a bad one fails the test. */
static inline union sockaddr_any
unit_addr(const char *ip, uint16_t port)
{
	union sockaddr_any sa;

	if (addr_parse(ip, port, &sa) != 0)
		fail_msg("bad test address %s", ip);
	return sa;
}

#endif
