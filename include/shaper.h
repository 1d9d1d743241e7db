/*
 * shaper: token buckets refilled on the loop's clock, and the flows (one
 * direction of one session) that draw on them. A flow is charged against
 * every bucket it is attached to (session, user, client, rule, a quota's
 * "then rate") and may take the least any of them has. A flow that finds a
 * bucket empty waits on it: its owner stops reading (TCP backpressure) and
 * is called back when the bucket's timer has refilled a round's worth.
 * Waiting flows are woken together and each may take an equal share of the
 * round, so busy flows get equal rates and an idle flow's share goes to the
 * busy ones. No timer per flow or per byte: one per bucket, armed only
 * while flows wait.
 */
#ifndef SOCKS5D_SHAPER_H
#define SOCKS5D_SHAPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "loop.h"

/* Buckets one flow can be charged against: session, user, client, rule,
 * and the then-rate buckets of a user and a client quota. */
#define SHAPER_MAX_BUCKETS 6

/* Tokens a bucket holds at most: 100 ms of its rate, and never less than
 * the largest UDP datagram (a datagram is all or nothing). */
#define SHAPER_BURST_MS 100
#define SHAPER_BURST_MIN ((uint64_t)64 * 1024)
/* A round (the tokens handed out at one wakeup) is at least this much of
 * the rate, SHAPER_MIN_SHARE per waiting flow when that is more (fewer,
 * larger reads with many flows), and at most SHAPER_BURST_MS of it. */
#define SHAPER_TICK_MS 10
#define SHAPER_MIN_SHARE ((uint64_t)4096)

/* The owner of a waiting flow may read again. */
typedef void (*shaper_resume_cb)(void *arg);

struct shaper_bucket;
struct shaper_flow;

/* A flow's place in one bucket. */
struct shaper_member {
	struct shaper_bucket *b;
	struct shaper_flow *f;
	TAILQ_ENTRY(shaper_member) link; /* b->waiters, while waiting */
	bool waiting;
	uint64_t round; /* b->round that taken counts for */
	uint64_t taken; /* bytes taken in that round */
};

TAILQ_HEAD(shaper_waitq, shaper_member);

struct shaper_bucket {
	struct loop *loop;
	uint64_t rate;   /* bytes per second; 0: unlimited (charges nothing) */
	uint64_t burst;  /* most tokens held */
	uint64_t tokens; /* bytes that may be taken now */
	uint64_t milli;  /* thousandths of a byte carried to the next refill */
	uint64_t at_ms;  /* loop time of the last refill */
	uint64_t round;  /* wakeups so far */
	uint64_t share;  /* what one flow may take this round; 0: no cap */
	bool closed;     /* gives nothing and wakes nobody until reopened */
	struct shaper_waitq waiters;
	size_t nwaiters;
	size_t nflows; /* flows attached */
	struct timer timer;
};

struct shaper_flow {
	struct shaper_member m[SHAPER_MAX_BUCKETS];
	size_t n;
	bool waiting; /* on one of its buckets: resume comes */
	shaper_resume_cb resume;
	void *arg;
};

/* Process-wide counters for metrics. */
struct shaper_stats {
	uint64_t waits; /* times a flow had to wait for tokens */
};
void shaper_get_stats(struct shaper_stats *out);

/* rate in bytes per second, 0 for unlimited; full of tokens. */
void shaper_bucket_init(struct shaper_bucket *b, struct loop *loop, uint64_t rate);
/* A new rate (tokens kept up to the new burst). Unlimited wakes every
 * waiter (from the timer, on this loop iteration). */
void shaper_bucket_set_rate(struct shaper_bucket *b, uint64_t rate);
/* Closed: every flow attached gets nothing and waits, untimed; reopening
 * wakes them (from the timer). */
void shaper_bucket_set_closed(struct shaper_bucket *b, bool closed);
/* Stops the timer; flows must be detached first. */
void shaper_bucket_stop(struct shaper_bucket *b);
/* Bytes per second a rate in bits per second allows (0 stays unlimited). */
uint64_t shaper_rate_from_bits(uint64_t bits);

void shaper_flow_init(struct shaper_flow *f, shaper_resume_cb resume, void *arg);
/* Charges f against b too (at most SHAPER_MAX_BUCKETS; beyond that, and
 * for NULL, nothing). */
void shaper_flow_attach(struct shaper_flow *f, struct shaper_bucket *b);
/* Leaves every bucket (and any wait). Idempotent. */
void shaper_flow_detach(struct shaper_flow *f);
/* How many of want bytes f may take now (then shaper_flow_charge with
 * what was really moved). 0: f waits, and resume is called (never from
 * inside this call) when it may try again. */
size_t shaper_flow_allow(struct shaper_flow *f, size_t want);
void shaper_flow_charge(struct shaper_flow *f, size_t n);
/* All of n now or nothing, without waiting (a datagram): true when taken
 * (charged). */
bool shaper_flow_take(struct shaper_flow *f, size_t n);

/* For tests: refill b as of now_ms, and run the wakeup its timer runs. */
void shaper_bucket_refill(struct shaper_bucket *b, uint64_t now_ms);
void shaper_bucket_wake(struct shaper_bucket *b);

#endif
