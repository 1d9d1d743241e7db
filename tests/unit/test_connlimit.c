/*
 * test_limits: per-IP and per-user counts (up, down, over the maximum,
 * entries gone at zero, growth to many keys, random churn against a model),
 * key normalization (IPv4-mapped, IPv6 prefix), and auth-failure lockouts
 * (N failures within W, spread-out failures, expiry, reset on success,
 * the bound on tracked IPs and which entries are evicted). Time is passed
 * in, so nothing here sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "addr.h"
#include "connlimit.h"

#include "unit_util.h"

/* A config with a fixed hash key and the given auth policy. */
static struct connlimit *
make(unsigned max_failures, uint64_t window_ms, uint64_t lockout_ms, size_t max_tracked,
	unsigned ipv6_prefix)
{
	struct connlimit_config cfg;
	struct connlimit *lim;
	size_t i;

	memset(&cfg, 0, sizeof(cfg));
	for (i = 0; i < sizeof(cfg.hash_key); i++)
		cfg.hash_key[i] = (uint8_t)(i * 7 + 1);
	cfg.ipv6_prefix = ipv6_prefix;
	cfg.auth.max_failures = max_failures;
	cfg.auth.window_ms = window_ms;
	cfg.auth.lockout_ms = lockout_ms;
	cfg.auth.max_tracked = max_tracked;
	lim = connlimit_new(&cfg);
	assert_non_null(lim);
	return lim;
}

static union sockaddr_any
ip(const char *s)
{
	return unit_addr(s, 1234);
}

/* The n-th of many distinct addresses: IPv4 for even n, IPv6 for odd. */
static union sockaddr_any
nth_ip(uint32_t n)
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	if (n % 2 == 0) {
		sa.sin.sin_family = AF_INET;
		sa.sin.sin_addr.s_addr = htonl(0x0a000000u + n / 2);
	} else {
		sa.sin6.sin6_family = AF_INET6;
		sa.sin6.sin6_addr.s6_addr[0] = 0x20;
		sa.sin6.sin6_addr.s6_addr[1] = 0x01;
		memcpy(&sa.sin6.sin6_addr.s6_addr[12], &n, sizeof(n));
	}
	return sa;
}

static void
acquire_ok(struct connlimit *lim, const union sockaddr_any *sa, unsigned max)
{
	assert_int_equal(connlimit_ip_acquire(lim, sa, max), CONNLIMIT_OK);
}

/* --- per-IP counts ------------------------------------------------------- */

static void
test_ip_count_up_down_and_removed_at_zero(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	union sockaddr_any a = ip("192.0.2.1"), b = ip("2001:db8::1");

	(void)state;
	assert_int_equal(connlimit_ip_count(lim, &a), 0);
	acquire_ok(lim, &a, 3);
	acquire_ok(lim, &a, 3);
	acquire_ok(lim, &a, 3);
	assert_int_equal(connlimit_ip_acquire(lim, &a, 3), CONNLIMIT_OVER);
	assert_int_equal(connlimit_ip_count(lim, &a), 3);
	acquire_ok(lim, &b, 3);
	assert_int_equal(connlimit_ip_entries(lim), 2);
	connlimit_ip_release(lim, &a);
	assert_int_equal(connlimit_ip_count(lim, &a), 2);
	acquire_ok(lim, &a, 3);
	connlimit_ip_release(lim, &a);
	connlimit_ip_release(lim, &a);
	connlimit_ip_release(lim, &a);
	assert_int_equal(connlimit_ip_count(lim, &a), 0);
	assert_int_equal(connlimit_ip_entries(lim), 1);
	/* Releasing what is not counted changes nothing. */
	connlimit_ip_release(lim, &a);
	assert_int_equal(connlimit_ip_entries(lim), 1);
	assert_int_equal(connlimit_ip_count(lim, &b), 1);
	connlimit_ip_release(lim, &b);
	assert_int_equal(connlimit_ip_entries(lim), 0);
	connlimit_free(lim);
}

static void
test_ip_max_zero_is_unlimited_and_max_may_change(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	union sockaddr_any a = ip("192.0.2.1");
	int i;

	(void)state;
	for (i = 0; i < 1000; i++)
		acquire_ok(lim, &a, 0);
	assert_int_equal(connlimit_ip_count(lim, &a), 1000);
	/* After a reload lowers the maximum, existing connections stay
	 * and new ones are refused until the count drops below it. */
	assert_int_equal(connlimit_ip_acquire(lim, &a, 10), CONNLIMIT_OVER);
	for (i = 0; i < 991; i++)
		connlimit_ip_release(lim, &a);
	acquire_ok(lim, &a, 10);
	assert_int_equal(connlimit_ip_acquire(lim, &a, 10), CONNLIMIT_OVER);
	connlimit_free(lim);
}

static void
test_ip_mapped_counts_as_ipv4(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	union sockaddr_any v4 = ip("192.0.2.1"), mapped = ip("::ffff:192.0.2.1");

	(void)state;
	acquire_ok(lim, &v4, 2);
	acquire_ok(lim, &mapped, 2);
	assert_int_equal(connlimit_ip_acquire(lim, &v4, 2), CONNLIMIT_OVER);
	assert_int_equal(connlimit_ip_count(lim, &mapped), 2);
	assert_int_equal(connlimit_ip_entries(lim), 1);
	connlimit_ip_release(lim, &mapped);
	connlimit_ip_release(lim, &v4);
	assert_int_equal(connlimit_ip_entries(lim), 0);
	connlimit_free(lim);
}

static void
test_ipv6_prefix_groups_addresses(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 64);
	union sockaddr_any a = ip("2001:db8::1"), b = ip("2001:db8::ffff:2");
	union sockaddr_any c = ip("2001:db8:0:1::1");
	struct connlimit_config cfg;

	(void)state;
	acquire_ok(lim, &a, 2);
	acquire_ok(lim, &b, 2);
	assert_int_equal(connlimit_ip_acquire(lim, &a, 2), CONNLIMIT_OVER);
	acquire_ok(lim, &c, 2);
	assert_int_equal(connlimit_ip_entries(lim), 2);
	connlimit_free(lim);
	/* Default: every address on its own. */
	lim = make(0, 0, 0, 0, 0);
	acquire_ok(lim, &a, 1);
	acquire_ok(lim, &b, 1);
	assert_int_equal(connlimit_ip_entries(lim), 2);
	connlimit_ip_release(lim, &a);
	connlimit_ip_release(lim, &b);
	connlimit_free(lim);
	/* A prefix inside a byte. */
	lim = make(0, 0, 0, 0, 60);
	a = ip("2001:db8:0:f::1");
	b = ip("2001:db8:0:0::1");
	acquire_ok(lim, &a, 0);
	acquire_ok(lim, &b, 0);
	assert_int_equal(connlimit_ip_entries(lim), 1);
	connlimit_free(lim);
	memset(&cfg, 0, sizeof(cfg));
	cfg.ipv6_prefix = 129;
	assert_null(connlimit_new(&cfg));
}

static void
test_non_ip_addresses_are_not_counted(void **state)
{
	struct connlimit *lim = make(3, 1000, 1000, 0, 0);
	union sockaddr_any un;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sa.sa_family = AF_UNIX;
	acquire_ok(lim, &un, 1);
	acquire_ok(lim, &un, 1);
	acquire_ok(lim, NULL, 1);
	assert_int_equal(connlimit_ip_count(lim, &un), 0);
	assert_int_equal(connlimit_ip_entries(lim), 0);
	connlimit_ip_release(lim, &un);
	assert_int_equal(connlimit_auth_fail(lim, &un, 0), CONNLIMIT_OK);
	assert_false(connlimit_auth_locked(lim, &un, 0, NULL));
	assert_int_equal(connlimit_auth_entries(lim), 0);
	connlimit_free(lim);
}

static void
test_ip_many_addresses_grow_the_table(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	const uint32_t n = 100000;
	union sockaddr_any sa;
	uint32_t i;

	(void)state;
	for (i = 0; i < n; i++) {
		sa = nth_ip(i);
		acquire_ok(lim, &sa, 2);
		if (i % 3 == 0)
			acquire_ok(lim, &sa, 2);
	}
	assert_int_equal(connlimit_ip_entries(lim), n);
	for (i = 0; i < n; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_ip_count(lim, &sa), i % 3 == 0 ? 2 : 1);
	}
	/* Remove every other key, then check the rest are still found
	 * (deletion must not cut probe runs). */
	for (i = 0; i < n; i += 2) {
		sa = nth_ip(i);
		connlimit_ip_release(lim, &sa);
		if (i % 3 == 0)
			connlimit_ip_release(lim, &sa);
	}
	assert_int_equal(connlimit_ip_entries(lim), n / 2);
	for (i = 0; i < n; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_ip_count(lim, &sa),
			i % 2 == 0 ? 0 : (i % 3 == 0 ? 2 : 1));
	}
	for (i = 1; i < n; i += 2) {
		sa = nth_ip(i);
		connlimit_ip_release(lim, &sa);
		if (i % 3 == 0)
			connlimit_ip_release(lim, &sa);
	}
	assert_int_equal(connlimit_ip_entries(lim), 0);
	connlimit_free(lim);
}

/* xorshift32: a fixed sequence, so a failure reproduces. */
static uint32_t
next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
test_ip_random_churn_matches_model(void **state)
{
	enum {
		KEYS = 3000,
		OPS = 300000,
		MAX = 4
	};
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	static unsigned model[KEYS];
	union sockaddr_any sa;
	uint32_t seed = 12345, k;
	size_t live = 0, i;

	(void)state;
	memset(model, 0, sizeof(model));
	for (i = 0; i < OPS; i++) {
		k = next_rand(&seed) % KEYS;
		sa = nth_ip(k);
		if (next_rand(&seed) % 2 == 0) {
			enum connlimit_status st = connlimit_ip_acquire(lim, &sa, MAX);

			assert_int_equal(st, model[k] < MAX ? CONNLIMIT_OK : CONNLIMIT_OVER);
			if (st == CONNLIMIT_OK && model[k]++ == 0)
				live++;
		} else {
			connlimit_ip_release(lim, &sa);
			if (model[k] > 0 && --model[k] == 0)
				live--;
		}
		assert_int_equal(connlimit_ip_count(lim, &sa), model[k]);
		assert_int_equal(connlimit_ip_entries(lim), live);
	}
	for (k = 0; k < KEYS; k++) {
		sa = nth_ip(k);
		assert_int_equal(connlimit_ip_count(lim, &sa), model[k]);
	}
	connlimit_free(lim);
}

/* --- per-user counts ----------------------------------------------------- */

static void
test_user_sessions_counted(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);

	(void)state;
	assert_int_equal(connlimit_user_acquire(lim, "alice", 2), CONNLIMIT_OK);
	assert_int_equal(connlimit_user_acquire(lim, "alice", 2), CONNLIMIT_OK);
	assert_int_equal(connlimit_user_acquire(lim, "alice", 2), CONNLIMIT_OVER);
	assert_int_equal(connlimit_user_acquire(lim, "Alice", 2), CONNLIMIT_OK);
	assert_int_equal(connlimit_user_acquire(lim, "bob", 0), CONNLIMIT_OK);
	assert_int_equal(connlimit_user_count(lim, "alice"), 2);
	assert_int_equal(connlimit_user_count(lim, "Alice"), 1);
	assert_int_equal(connlimit_user_count(lim, "carol"), 0);
	assert_int_equal(connlimit_user_entries(lim), 3);
	connlimit_user_release(lim, "alice");
	assert_int_equal(connlimit_user_acquire(lim, "alice", 2), CONNLIMIT_OK);
	connlimit_user_release(lim, "alice");
	connlimit_user_release(lim, "alice");
	connlimit_user_release(lim, "Alice");
	connlimit_user_release(lim, "carol");
	assert_int_equal(connlimit_user_entries(lim), 1);
	/* No authentication, no user: not counted. */
	assert_int_equal(connlimit_user_acquire(lim, NULL, 1), CONNLIMIT_OK);
	assert_int_equal(connlimit_user_acquire(lim, NULL, 1), CONNLIMIT_OK);
	connlimit_user_release(lim, NULL);
	assert_int_equal(connlimit_user_count(lim, NULL), 0);
	assert_int_equal(connlimit_user_entries(lim), 1);
	/* The name is copied: the caller's buffer may go away. */
	{
		char *name = strdup("dave");

		assert_non_null(name);
		assert_int_equal(connlimit_user_acquire(lim, name, 1), CONNLIMIT_OK);
		free(name);
	}
	assert_int_equal(connlimit_user_count(lim, "dave"), 1);
	connlimit_free(lim);
}

static void
test_user_many_names_grow_the_table(void **state)
{
	struct connlimit *lim = make(0, 0, 0, 0, 0);
	char name[32];
	int i;

	(void)state;
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_int_equal(connlimit_user_acquire(lim, name, 1), CONNLIMIT_OK);
	}
	assert_int_equal(connlimit_user_entries(lim), 20000);
	for (i = 0; i < 20000; i += 2) {
		snprintf(name, sizeof(name), "user%d", i);
		connlimit_user_release(lim, name);
	}
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_int_equal(connlimit_user_count(lim, name), (unsigned)(i % 2));
	}
	assert_int_equal(connlimit_user_entries(lim), 10000);
	/* Freed with names still counted: no leak under ASan. */
	connlimit_free(lim);
}

/* --- auth failures ------------------------------------------------------- */

static void
test_auth_lockout_after_n_failures_within_window(void **state)
{
	struct connlimit *lim = make(3, 1000, 5000, 0, 0);
	union sockaddr_any a = ip("192.0.2.1"), other = ip("192.0.2.2");
	uint64_t left = 99;

	(void)state;
	assert_false(connlimit_auth_locked(lim, &a, 0, &left));
	assert_int_equal(left, 0);
	assert_int_equal(connlimit_auth_fail(lim, &a, 100), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, 600), CONNLIMIT_OK);
	assert_false(connlimit_auth_locked(lim, &a, 700, &left));
	assert_int_equal(connlimit_auth_fail(lim, &a, 1099), CONNLIMIT_LOCKOUT_STARTED);
	assert_true(connlimit_auth_locked(lim, &a, 1099, &left));
	assert_int_equal(left, 5000);
	assert_true(connlimit_auth_locked(lim, &a, 6098, &left));
	assert_int_equal(left, 1);
	assert_true(connlimit_auth_locked(lim, &a, 3000, NULL));
	/* Other addresses are not affected; the mapped form is the same. */
	assert_false(connlimit_auth_locked(lim, &other, 2000, NULL));
	{
		union sockaddr_any mapped = ip("::ffff:192.0.2.1");

		assert_true(connlimit_auth_locked(lim, &mapped, 2000, NULL));
	}
	/* Failures during the lockout do not extend it. */
	assert_int_equal(connlimit_auth_fail(lim, &a, 6000), CONNLIMIT_LOCKED);
	assert_true(connlimit_auth_locked(lim, &a, 6098, NULL));
	assert_false(connlimit_auth_locked(lim, &a, 6099, &left));
	assert_int_equal(left, 0);
	connlimit_free(lim);
}

static void
test_auth_failures_spread_beyond_window_never_lock(void **state)
{
	struct connlimit *lim = make(3, 1000, 5000, 0, 0);
	union sockaddr_any a = ip("2001:db8::7");
	uint64_t t;

	(void)state;
	/* Two failures per window, for a long time. */
	for (t = 0; t < 100000; t += 500) {
		assert_int_equal(connlimit_auth_fail(lim, &a, t), CONNLIMIT_OK);
		assert_false(connlimit_auth_locked(lim, &a, t, NULL));
	}
	/* The window is measured from the streak's first failure: the
	 * third failure at exactly W starts a new streak. */
	connlimit_auth_ok(lim, &a, t);
	assert_int_equal(connlimit_auth_fail(lim, &a, t), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, t + 999), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, t + 1000), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, t + 1001), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, t + 1002), CONNLIMIT_LOCKOUT_STARTED);
	connlimit_free(lim);
}

static void
test_auth_lockout_expires_then_fresh_streak(void **state)
{
	struct connlimit *lim = make(2, 1000, 3000, 0, 0);
	union sockaddr_any a = ip("192.0.2.9");

	(void)state;
	assert_int_equal(connlimit_auth_fail(lim, &a, 0), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, 1), CONNLIMIT_LOCKOUT_STARTED);
	assert_int_equal(connlimit_auth_entries(lim), 1);
	assert_false(connlimit_auth_locked(lim, &a, 3001, NULL));
	/* The lookup dropped the expired entry. */
	assert_int_equal(connlimit_auth_entries(lim), 0);
	assert_int_equal(connlimit_auth_fail(lim, &a, 3002), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, 3003), CONNLIMIT_LOCKOUT_STARTED);
	/* Expired lockout with no lookup in between: the next failure
	 * starts a new streak instead of counting against the old one. */
	assert_int_equal(connlimit_auth_fail(lim, &a, 6003), CONNLIMIT_OK);
	assert_false(connlimit_auth_locked(lim, &a, 6003, NULL));
	connlimit_free(lim);
}

static void
test_auth_success_resets_failures(void **state)
{
	struct connlimit *lim = make(3, 1000, 5000, 0, 0);
	union sockaddr_any a = ip("192.0.2.1");

	(void)state;
	assert_int_equal(connlimit_auth_fail(lim, &a, 0), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, 1), CONNLIMIT_OK);
	connlimit_auth_ok(lim, &a, 2);
	assert_int_equal(connlimit_auth_entries(lim), 0);
	assert_int_equal(connlimit_auth_fail(lim, &a, 3), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &a, 4), CONNLIMIT_OK);
	assert_false(connlimit_auth_locked(lim, &a, 5, NULL));
	assert_int_equal(connlimit_auth_fail(lim, &a, 5), CONNLIMIT_LOCKOUT_STARTED);
	/* A success during a lockout (another user behind the same NAT)
	 * does not lift it. */
	connlimit_auth_ok(lim, &a, 6);
	assert_true(connlimit_auth_locked(lim, &a, 6, NULL));
	connlimit_auth_ok(lim, &a, 5005);
	assert_false(connlimit_auth_locked(lim, &a, 5005, NULL));
	assert_int_equal(connlimit_auth_entries(lim), 0);
	/* Success for an unknown address is harmless. */
	connlimit_auth_ok(lim, &a, 6000);
	connlimit_free(lim);
}

static void
test_auth_table_bounded_evicts_oldest_streak(void **state)
{
	struct connlimit *lim = make(2, 1000000, 1000000, 100, 0);
	union sockaddr_any locked = ip("198.51.100.1"), sa;
	uint32_t i;

	(void)state;
	assert_int_equal(connlimit_auth_fail(lim, &locked, 0), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_fail(lim, &locked, 0), CONNLIMIT_LOCKOUT_STARTED);
	for (i = 0; i < 1000; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, 1 + i), CONNLIMIT_OK);
		assert_true(connlimit_auth_entries(lim) <= 100);
	}
	assert_int_equal(connlimit_auth_entries(lim), 100);
	/* A flood of fresh addresses does not unlock the attacker. */
	assert_true(connlimit_auth_locked(lim, &locked, 2000, NULL));
	/* The newest streaks are kept (a second failure locks), the
	 * oldest were forgotten (a second failure is a first again). */
	sa = nth_ip(999);
	assert_int_equal(connlimit_auth_fail(lim, &sa, 2000), CONNLIMIT_LOCKOUT_STARTED);
	sa = nth_ip(902);
	assert_int_equal(connlimit_auth_fail(lim, &sa, 2001), CONNLIMIT_LOCKOUT_STARTED);
	sa = nth_ip(0);
	assert_int_equal(connlimit_auth_fail(lim, &sa, 2002), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_entries(lim), 100);
	connlimit_free(lim);
}

static void
test_auth_table_all_locked_evicts_oldest_lockout(void **state)
{
	struct connlimit *lim = make(1, 1000, 1000000, 4, 0);
	union sockaddr_any sa;
	uint32_t i;

	(void)state;
	for (i = 0; i < 6; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, i), CONNLIMIT_LOCKOUT_STARTED);
	}
	assert_int_equal(connlimit_auth_entries(lim), 4);
	for (i = 0; i < 6; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_locked(lim, &sa, 10, NULL), i >= 2);
	}
	connlimit_free(lim);
}

static void
test_auth_default_bound_is_65536(void **state)
{
	struct connlimit *lim = make(5, 60000, 60000, 0, 0);
	union sockaddr_any sa;
	uint32_t i;

	(void)state;
	for (i = 0; i < CONNLIMIT_AUTH_TRACKED_DEFAULT + 1000; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, i / 100), CONNLIMIT_OK);
	}
	assert_int_equal(connlimit_auth_entries(lim), CONNLIMIT_AUTH_TRACKED_DEFAULT);
	connlimit_free(lim);
}

static void
test_auth_expire_sweeps_old_entries(void **state)
{
	struct connlimit *lim = make(2, 1000, 5000, 0, 0);
	union sockaddr_any sa;
	uint32_t i;

	(void)state;
	/* Streaks starting at 0..9, and lockouts at 100..104. */
	for (i = 0; i < 10; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, i), CONNLIMIT_OK);
	}
	for (i = 10; i < 15; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, 90 + i), CONNLIMIT_OK);
		assert_int_equal(connlimit_auth_fail(lim, &sa, 90 + i), CONNLIMIT_LOCKOUT_STARTED);
	}
	assert_int_equal(connlimit_auth_expire(lim, 999), 0);
	assert_int_equal(connlimit_auth_expire(lim, 1004), 5);
	assert_int_equal(connlimit_auth_entries(lim), 10);
	assert_int_equal(connlimit_auth_expire(lim, 1009), 5);
	assert_int_equal(connlimit_auth_expire(lim, 5101), 2);
	assert_int_equal(connlimit_auth_expire(lim, 1000000), 3);
	assert_int_equal(connlimit_auth_entries(lim), 0);
	connlimit_free(lim);
}

static void
test_auth_policy_changes(void **state)
{
	struct connlimit *lim = make(1, 1000, 1000000, 0, 0);
	struct connlimit_auth_policy p = { 1, 1000, 1000000, 3 };
	union sockaddr_any sa;
	uint32_t i;

	(void)state;
	for (i = 0; i < 10; i++) {
		sa = nth_ip(i);
		assert_int_equal(connlimit_auth_fail(lim, &sa, i), CONNLIMIT_LOCKOUT_STARTED);
	}
	/* A smaller table keeps the newest. */
	connlimit_set_auth_policy(lim, &p);
	assert_int_equal(connlimit_auth_entries(lim), 3);
	sa = nth_ip(9);
	assert_true(connlimit_auth_locked(lim, &sa, 20, NULL));
	sa = nth_ip(6);
	assert_false(connlimit_auth_locked(lim, &sa, 20, NULL));
	/* Turning tracking off lifts every lockout and counts nothing. */
	p.max_failures = 0;
	connlimit_set_auth_policy(lim, &p);
	assert_int_equal(connlimit_auth_entries(lim), 0);
	sa = nth_ip(9);
	assert_false(connlimit_auth_locked(lim, &sa, 20, NULL));
	for (i = 0; i < 10; i++)
		assert_int_equal(connlimit_auth_fail(lim, &sa, 30), CONNLIMIT_OK);
	assert_int_equal(connlimit_auth_entries(lim), 0);
	/* So does a zero lockout. */
	p.max_failures = 1;
	p.lockout_ms = 0;
	connlimit_set_auth_policy(lim, &p);
	assert_int_equal(connlimit_auth_fail(lim, &sa, 40), CONNLIMIT_OK);
	assert_false(connlimit_auth_locked(lim, &sa, 40, NULL));
	/* Back on. */
	p.lockout_ms = 10;
	connlimit_set_auth_policy(lim, &p);
	assert_int_equal(connlimit_auth_fail(lim, &sa, 50), CONNLIMIT_LOCKOUT_STARTED);
	assert_true(connlimit_auth_locked(lim, &sa, 59, NULL));
	assert_false(connlimit_auth_locked(lim, &sa, 60, NULL));
	connlimit_free(lim);
}

static void
test_auth_lockout_end_saturates(void **state)
{
	struct connlimit *lim = make(1, 1000, UINT64_MAX, 0, 0);
	union sockaddr_any sa = ip("192.0.2.1");
	uint64_t left;

	(void)state;
	assert_int_equal(connlimit_auth_fail(lim, &sa, 5), CONNLIMIT_LOCKOUT_STARTED);
	assert_true(connlimit_auth_locked(lim, &sa, UINT64_MAX - 1, &left));
	assert_int_equal(left, 1);
	connlimit_free(lim);
	connlimit_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ip_count_up_down_and_removed_at_zero),
		cmocka_unit_test(test_ip_max_zero_is_unlimited_and_max_may_change),
		cmocka_unit_test(test_ip_mapped_counts_as_ipv4),
		cmocka_unit_test(test_ipv6_prefix_groups_addresses),
		cmocka_unit_test(test_non_ip_addresses_are_not_counted),
		cmocka_unit_test(test_ip_many_addresses_grow_the_table),
		cmocka_unit_test(test_ip_random_churn_matches_model),
		cmocka_unit_test(test_user_sessions_counted),
		cmocka_unit_test(test_user_many_names_grow_the_table),
		cmocka_unit_test(test_auth_lockout_after_n_failures_within_window),
		cmocka_unit_test(test_auth_failures_spread_beyond_window_never_lock),
		cmocka_unit_test(test_auth_lockout_expires_then_fresh_streak),
		cmocka_unit_test(test_auth_success_resets_failures),
		cmocka_unit_test(test_auth_table_bounded_evicts_oldest_streak),
		cmocka_unit_test(test_auth_table_all_locked_evicts_oldest_lockout),
		cmocka_unit_test(test_auth_default_bound_is_65536),
		cmocka_unit_test(test_auth_expire_sweeps_old_entries),
		cmocka_unit_test(test_auth_policy_changes),
		cmocka_unit_test(test_auth_lockout_end_saturates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
