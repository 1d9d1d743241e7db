/*
 * Unit tests for shaper (issue 18): token arithmetic to the byte (fractions
 * carried, the burst cap), a flow charged against several buckets taking
 * the least, waiting and being resumed (never from inside the call that
 * made it wait), equal shares between busy flows and an idle flow's share
 * going to the busy ones, closed buckets, and all-or-nothing takes for
 * datagrams. Time is driven by hand (shaper_bucket_refill with explicit
 * clock values, shaper_bucket_wake for the timer), so every count is exact;
 * one test lets the real loop's timer do the wakeup, bounded in time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "shaper.h"
#include "unit_util.h"

struct fx {
	struct loop *loop;
	uint64_t t; /* the clock handed to shaper_bucket_refill */
};

/* A flow's owner: counts resumes. */
struct owner {
	struct shaper_flow f;
	unsigned resumed;
	uint64_t got; /* bytes taken */
};

static void
on_resume(void *arg)
{
	((struct owner *)arg)->resumed++;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->loop = loop_new();
	assert_non_null(f->loop);
	f->t = loop_now(f->loop);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	loop_free(f->loop);
	free(f);
	return 0;
}

/* An empty bucket of rate bytes per second, clocked by the fixture. */
static void
bucket_empty(struct fx *f, struct shaper_bucket *b, uint64_t rate)
{
	shaper_bucket_init(b, f->loop, rate);
	b->tokens = 0;
	b->at_ms = f->t;
}

static void
test_refill_carries_fractions_and_caps_at_the_burst(void **state)
{
	struct fx *f = *state;
	struct shaper_bucket b;
	static const uint64_t want[] = { 1, 3, 4, 6, 7, 9, 10, 12 };

	/* 1500 bytes a second: 1.5 a millisecond, the half carried. */
	bucket_empty(f, &b, 1500);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		shaper_bucket_refill(&b, ++f->t);
		assert_true(b.tokens == want[i]);
	}
	/* Time going nowhere adds nothing. */
	shaper_bucket_refill(&b, f->t);
	shaper_bucket_refill(&b, f->t - 5);
	assert_true(b.tokens == 12);
	/* The burst: the larger of 100 ms of rate and SHAPER_BURST_MIN. */
	assert_true(b.burst == SHAPER_BURST_MIN);
	f->t += 3600 * 1000;
	shaper_bucket_refill(&b, f->t);
	assert_true(b.tokens == SHAPER_BURST_MIN);
	shaper_bucket_stop(&b);

	shaper_bucket_init(&b, f->loop, 25000000);
	assert_true(b.burst == 2500000 && b.tokens == 2500000);
	shaper_bucket_stop(&b);
	assert_true(shaper_rate_from_bits(10000000) == 1250000);
	assert_true(shaper_rate_from_bits(0) == 0);
	assert_true(shaper_rate_from_bits(1) == 1);
}

static void
test_a_flow_takes_the_least_of_its_buckets(void **state)
{
	struct fx *f = *state;
	struct shaper_bucket a, b, unl;
	struct owner o = { 0 };

	bucket_empty(f, &a, 1000);
	bucket_empty(f, &b, 1000);
	shaper_bucket_init(&unl, f->loop, 0);
	a.tokens = 700;
	b.tokens = 300;
	shaper_flow_init(&o.f, on_resume, &o);
	shaper_flow_attach(&o.f, &a);
	shaper_flow_attach(&o.f, &unl);
	shaper_flow_attach(&o.f, &b);
	assert_int_equal(a.nflows, 1);
	assert_int_equal(shaper_flow_allow(&o.f, 10000), 300);
	assert_int_equal(shaper_flow_allow(&o.f, 100), 100);
	shaper_flow_charge(&o.f, 250);
	assert_true(a.tokens == 450 && b.tokens == 50);
	assert_int_equal(shaper_flow_allow(&o.f, 10000), 50);
	shaper_flow_charge(&o.f, 50);
	/* b is empty: the flow waits on it, not on a. */
	assert_int_equal(shaper_flow_allow(&o.f, 10000), 0);
	assert_true(o.f.waiting);
	assert_int_equal(b.nwaiters, 1);
	assert_int_equal(a.nwaiters, 0);
	assert_true(timer_active(&b.timer));
	assert_int_equal(o.resumed, 0);
	/* Asking again while waiting does not queue twice. */
	assert_int_equal(shaper_flow_allow(&o.f, 10000), 0);
	assert_int_equal(b.nwaiters, 1);
	shaper_flow_detach(&o.f);
	assert_int_equal(b.nwaiters, 0);
	assert_int_equal(a.nflows + b.nflows + unl.nflows, 0);
	assert_false(o.f.waiting);
	/* Detached: nothing limits it. */
	assert_int_equal(shaper_flow_allow(&o.f, 10000), 10000);
	shaper_bucket_stop(&a);
	shaper_bucket_stop(&b);
	shaper_bucket_stop(&unl);
}

/* Flows that all want as much as they can get take exactly the same
 * number of bytes round after round; one that stops asking leaves its
 * share to the others from the next round on. */
static void
test_busy_flows_get_equal_shares_and_an_idle_share_is_passed_on(void **state)
{
	enum {
		N = 5,
		ROUNDS = 200
	};
	struct fx *f = *state;
	struct shaper_bucket b;
	struct owner o[N];
	uint64_t total = 0;

	memset(o, 0, sizeof(o));
	bucket_empty(f, &b, 1000000);
	for (int i = 0; i < N; i++) {
		shaper_flow_init(&o[i].f, on_resume, &o[i]);
		shaper_flow_attach(&o[i].f, &b);
	}
	for (int r = 0; r < ROUNDS; r++) {
		/* Every busy flow reads until told to wait (it was resumed,
		 * or it is its first round). */
		for (int i = 0; i < N; i++) {
			size_t n;
			if (r >= ROUNDS / 2 && i == 0)
				continue; /* flow 0 goes idle half-way */
			while ((n = shaper_flow_allow(&o[i].f, 1000)) > 0) {
				shaper_flow_charge(&o[i].f, n);
				o[i].got += n;
			}
		}
		f->t += 10;
		shaper_bucket_refill(&b, f->t);
		shaper_bucket_wake(&b);
	}
	for (int i = 0; i < N; i++)
		total += o[i].got;
	/* Nothing beyond the rate: the first burst plus 10 ms a round. */
	assert_true(total <= b.burst + (uint64_t)ROUNDS * 10000);
	assert_true(total >= (uint64_t)(ROUNDS - 1) * 10000);
	/* Flows 1..4 equal to a share; flow 0 got a fifth for half of the
	 * time, they a fifth, then a quarter: 99 rounds of 2000 bytes against
	 * those plus 2000, a catch-up of 3000 and 98 rounds of 2500. */
	for (int i = 2; i < N; i++)
		if (o[i].got != o[1].got)
			fail_msg("flow %d got %llu, flow 1 %llu", i, (unsigned long long)o[i].got,
				(unsigned long long)o[1].got);
	assert_true(o[0].got == 99 * 2000);
	assert_true(o[1].got == 99 * 2000 + 2000 + 3000 + 98 * 2500);
	assert_true(o[1].resumed >= ROUNDS - 2);
	for (int i = 0; i < N; i++)
		shaper_flow_detach(&o[i].f);
	shaper_bucket_stop(&b);
}

/* While the bucket is contended a flow may take its share of the round
 * and no more, even when tokens are left for the others. */
static void
test_a_woken_flow_takes_its_share_and_no_more(void **state)
{
	struct fx *f = *state;
	struct shaper_bucket b;
	struct owner o[3];

	memset(o, 0, sizeof(o));
	bucket_empty(f, &b, 100000);
	for (int i = 0; i < 3; i++) {
		shaper_flow_init(&o[i].f, on_resume, &o[i]);
		shaper_flow_attach(&o[i].f, &b);
		assert_int_equal(shaper_flow_allow(&o[i].f, 100), 0);
	}
	assert_int_equal(b.nwaiters, 3);
	b.tokens = 3000;
	shaper_bucket_wake(&b);
	assert_int_equal(b.nwaiters, 0);
	assert_true(b.share == 1000);
	for (int i = 0; i < 3; i++)
		assert_int_equal(o[i].resumed, 1);
	assert_int_equal(shaper_flow_allow(&o[0].f, 5000), 1000);
	shaper_flow_charge(&o[0].f, 600);
	assert_int_equal(shaper_flow_allow(&o[0].f, 5000), 400);
	shaper_flow_charge(&o[0].f, 400);
	assert_int_equal(shaper_flow_allow(&o[0].f, 5000), 0);
	assert_true(b.tokens == 2000);
	assert_int_equal(shaper_flow_allow(&o[1].f, 5000), 1000);
	for (int i = 0; i < 3; i++)
		shaper_flow_detach(&o[i].f);
	shaper_bucket_stop(&b);
}

static void
test_closed_buckets_and_datagrams(void **state)
{
	struct fx *f = *state;
	struct shaper_bucket b, c;
	struct owner o = { 0 };

	bucket_empty(f, &b, 1000);
	shaper_bucket_init(&c, f->loop, 0);
	b.tokens = 1500;
	shaper_flow_init(&o.f, on_resume, &o);
	shaper_flow_attach(&o.f, &b);
	shaper_flow_attach(&o.f, &c);
	/* All or nothing, no waiting. */
	assert_false(shaper_flow_take(&o.f, 1501));
	assert_true(b.tokens == 1500);
	assert_true(shaper_flow_take(&o.f, 1000));
	assert_true(b.tokens == 500);
	assert_false(o.f.waiting);
	/* Closed: nothing, and the wait has no timer. */
	shaper_bucket_set_closed(&c, true);
	assert_false(shaper_flow_take(&o.f, 1));
	assert_int_equal(shaper_flow_allow(&o.f, 100), 0);
	assert_int_equal(c.nwaiters, 1);
	assert_false(timer_active(&c.timer));
	shaper_bucket_wake(&c);
	assert_int_equal(o.resumed, 0);
	/* Reopening wakes the waiter from the timer, not from the call. */
	shaper_bucket_set_closed(&c, false);
	assert_int_equal(o.resumed, 0);
	assert_true(timer_active(&c.timer));
	shaper_bucket_wake(&c);
	assert_int_equal(o.resumed, 1);
	assert_int_equal(shaper_flow_allow(&o.f, 100), 100);
	/* Unlimited now: waiters go on, again from the timer. */
	b.tokens = 0;
	assert_int_equal(shaper_flow_allow(&o.f, 100), 0);
	shaper_bucket_set_rate(&b, 0);
	assert_int_equal(o.resumed, 1);
	shaper_bucket_wake(&b);
	assert_int_equal(o.resumed, 2);
	assert_int_equal(shaper_flow_allow(&o.f, 1 << 20), 1 << 20);
	shaper_flow_detach(&o.f);
	shaper_bucket_stop(&b);
	shaper_bucket_stop(&c);
}

static bool
resumed_once(void *arg)
{
	return ((struct owner *)arg)->resumed > 0;
}

/* The bucket's own timer refills and wakes the waiter (the only test that
 * lets time pass; bounded). */
static void
test_the_timer_wakes_a_waiting_flow(void **state)
{
	struct fx *f = *state;
	struct shaper_bucket b;
	struct owner o = { 0 };

	loop_update_time(f->loop);
	shaper_bucket_init(&b, f->loop, 100000);
	b.tokens = 0;
	shaper_flow_init(&o.f, on_resume, &o);
	shaper_flow_attach(&o.f, &b);
	assert_int_equal(shaper_flow_allow(&o.f, 4096), 0);
	assert_true(unit_run_until(f->loop, resumed_once, &o, 5000));
	assert_true(shaper_flow_allow(&o.f, 4096) > 0);
	shaper_flow_detach(&o.f);
	shaper_bucket_stop(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_refill_carries_fractions_and_caps_at_the_burst,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_flow_takes_the_least_of_its_buckets, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_busy_flows_get_equal_shares_and_an_idle_share_is_passed_on, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_a_woken_flow_takes_its_share_and_no_more,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_buckets_and_datagrams, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_timer_wakes_a_waiting_flow, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
