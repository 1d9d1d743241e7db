/*
 * shaper: token buckets and the flows that take from them, in the loop.
 *
 * A bucket refills lazily (whenever it is asked, from the loop's cached
 * clock, carrying fractions of a byte) and holds at most a burst. Flows
 * that find it empty queue on it; one timer per bucket, armed only while
 * flows wait, fires when a round's worth has come back. The wakeup hands
 * every waiter the same share of what is there (the round number tells a
 * flow's taken bytes of this round from the last one's): as each woken
 * flow's owner reads at most its share, every busy flow gets the same
 * rate, and what an idle flow leaves stays for the next round's busy ones.
 * The owners resume reading from their own events, not from the wakeup.
 */
#include "shaper.h"

#include <string.h>

static struct shaper_stats stats;

void
shaper_get_stats(struct shaper_stats *out)
{
	*out = stats;
}

uint64_t
shaper_rate_from_bits(uint64_t bits)
{
	if (bits == 0)
		return 0;
	return bits / 8 ? bits / 8 : 1;
}

static uint64_t
bucket_burst(uint64_t rate)
{
	uint64_t b = rate * SHAPER_BURST_MS / 1000;

	return b > SHAPER_BURST_MIN ? b : SHAPER_BURST_MIN;
}

void
shaper_bucket_refill(struct shaper_bucket *b, uint64_t now_ms)
{
	uint64_t dt, add;

	if (now_ms <= b->at_ms)
		return;
	dt = now_ms - b->at_ms;
	b->at_ms = now_ms;
	if (!b->rate)
		return;
	/* An hour fills any bucket (SHAPER_BURST_MIN at 1kbit takes 9
	 * minutes), and rate * dt cannot overflow below that. */
	if (dt > UINT64_C(3600000))
		dt = UINT64_C(3600000);
	add = b->rate * dt + b->milli;
	b->tokens += add / 1000;
	b->milli = add % 1000;
	if (b->tokens >= b->burst) {
		b->tokens = b->burst;
		b->milli = 0;
	}
}

/* What one round hands out: see SHAPER_TICK_MS. */
static uint64_t
bucket_round_bytes(const struct shaper_bucket *b)
{
	uint64_t tick = b->rate * SHAPER_TICK_MS / 1000, want = b->nwaiters * SHAPER_MIN_SHARE;
	uint64_t most = b->rate * SHAPER_BURST_MS / 1000;

	if (want > most)
		want = most;
	if (want < tick)
		want = tick;
	return want < b->burst ? want : b->burst;
}

static void
bucket_arm(struct shaper_bucket *b)
{
	uint64_t need = bucket_round_bytes(b), ms = 1;

	if (b->closed || !b->rate || timer_active(&b->timer))
		return;
	if (need > b->tokens)
		ms = ((need - b->tokens) * 1000 + b->rate - 1) / b->rate;
	timer_start(b->loop, &b->timer, ms < 1 ? 1 : ms > 1000 ? 1000 : ms);
}

void
shaper_bucket_wake(struct shaper_bucket *b)
{
	size_t nw = b->nwaiters;

	shaper_bucket_refill(b, loop_now(b->loop));
	if (nw == 0) {
		b->share = 0;
		return;
	}
	if (b->closed)
		return;
	if (b->rate && b->tokens == 0) {
		bucket_arm(b);
		return;
	}
	b->round++;
	b->share = b->rate ? (b->tokens / nw ? b->tokens / nw : 1) : 0;
	/* FIFO: who waits again goes to the back. An owner's resume may stop
	 * other flows (a session that ends), which leave the queue: take the
	 * first one afresh each time, at most the nw that waited. */
	for (size_t i = 0; i < nw; i++) {
		struct shaper_member *m = TAILQ_FIRST(&b->waiters);
		if (!m)
			break;
		TAILQ_REMOVE(&b->waiters, m, link);
		m->waiting = false;
		b->nwaiters--;
		m->f->waiting = false;
		m->f->resume(m->f->arg);
	}
}

static void
bucket_on_timer(struct loop *loop, void *arg)
{
	shaper_bucket_wake(arg);
}

void
shaper_bucket_init(struct shaper_bucket *b, struct loop *loop, uint64_t rate)
{
	memset(b, 0, sizeof(*b));
	b->loop = loop;
	b->rate = rate;
	b->burst = bucket_burst(rate);
	b->tokens = b->burst;
	b->at_ms = loop_now(loop);
	TAILQ_INIT(&b->waiters);
	timer_init(&b->timer, bucket_on_timer, b);
}

void
shaper_bucket_set_rate(struct shaper_bucket *b, uint64_t rate)
{
	if (rate == b->rate)
		return;
	shaper_bucket_refill(b, loop_now(b->loop));
	b->rate = rate;
	b->burst = bucket_burst(rate);
	if (b->tokens > b->burst)
		b->tokens = b->burst;
	b->milli = 0;
	b->share = 0;
	timer_stop(b->loop, &b->timer);
	/* Unlimited: the waiters go on at once, from the timer (never from
	 * inside this call: their owners may be the caller). */
	if (!rate && b->nwaiters)
		timer_start(b->loop, &b->timer, 0);
	else if (b->nwaiters)
		bucket_arm(b);
}

void
shaper_bucket_set_closed(struct shaper_bucket *b, bool closed)
{
	if (closed == b->closed)
		return;
	b->closed = closed;
	if (closed) {
		timer_stop(b->loop, &b->timer);
		return;
	}
	b->share = 0;
	if (b->nwaiters)
		timer_start(b->loop, &b->timer, 0);
}

void
shaper_bucket_stop(struct shaper_bucket *b)
{
	struct shaper_member *m;

	while ((m = TAILQ_FIRST(&b->waiters))) {
		TAILQ_REMOVE(&b->waiters, m, link);
		m->waiting = false;
		m->f->waiting = false;
	}
	b->nwaiters = 0;
	timer_stop(b->loop, &b->timer);
}

void
shaper_flow_init(struct shaper_flow *f, shaper_resume_cb resume, void *arg)
{
	memset(f, 0, sizeof(*f));
	f->resume = resume;
	f->arg = arg;
}

void
shaper_flow_attach(struct shaper_flow *f, struct shaper_bucket *b)
{
	struct shaper_member *m;

	if (!b || f->n == SHAPER_MAX_BUCKETS)
		return;
	m = &f->m[f->n++];
	memset(m, 0, sizeof(*m));
	m->b = b;
	m->f = f;
	b->nflows++;
}

void
shaper_flow_detach(struct shaper_flow *f)
{
	for (size_t i = 0; i < f->n; i++) {
		struct shaper_member *m = &f->m[i];
		if (m->waiting) {
			TAILQ_REMOVE(&m->b->waiters, m, link);
			m->b->nwaiters--;
			m->waiting = false;
		}
		m->b->nflows--;
	}
	f->n = 0;
	f->waiting = false;
}

/* What m's bucket lets its flow take now: the tokens, and while flows
 * compete (a share is set), what is left of the flow's share this round. */
static uint64_t
member_avail(struct shaper_member *m, uint64_t now)
{
	struct shaper_bucket *b = m->b;

	if (b->closed)
		return 0;
	if (!b->rate)
		return UINT64_MAX;
	shaper_bucket_refill(b, now);
	if (!b->share)
		return b->tokens;
	if (m->round != b->round) {
		m->round = b->round;
		m->taken = 0;
	}
	if (m->taken >= b->share)
		return 0;
	return b->share - m->taken < b->tokens ? b->share - m->taken : b->tokens;
}

static void
member_wait(struct shaper_member *m)
{
	struct shaper_bucket *b = m->b;

	m->waiting = true;
	m->f->waiting = true;
	TAILQ_INSERT_TAIL(&b->waiters, m, link);
	b->nwaiters++;
	stats.waits++;
	bucket_arm(b);
}

size_t
shaper_flow_allow(struct shaper_flow *f, size_t want)
{
	struct shaper_member *empty = NULL;
	uint64_t now;

	if (f->waiting)
		return 0;
	if (f->n == 0)
		return want;
	now = loop_now(f->m[0].b->loop);
	for (size_t i = 0; i < f->n; i++) {
		uint64_t avail = member_avail(&f->m[i], now);
		if (avail == 0 && !empty)
			empty = &f->m[i];
		if (avail < want)
			want = (size_t)avail;
	}
	if (empty)
		member_wait(empty);
	return want;
}

void
shaper_flow_charge(struct shaper_flow *f, size_t n)
{
	for (size_t i = 0; i < f->n; i++) {
		struct shaper_member *m = &f->m[i];
		struct shaper_bucket *b = m->b;
		if (!b->rate)
			continue;
		b->tokens = b->tokens > n ? b->tokens - n : 0;
		if (b->share && m->round == b->round)
			m->taken += n;
	}
}

bool
shaper_flow_take(struct shaper_flow *f, size_t n)
{
	for (size_t i = 0; i < f->n; i++) {
		struct shaper_bucket *b = f->m[i].b;
		if (b->closed)
			return false;
		if (!b->rate)
			continue;
		shaper_bucket_refill(b, loop_now(b->loop));
		if (b->tokens < n)
			return false;
	}
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].b->rate)
			f->m[i].b->tokens -= n;
	return true;
}
