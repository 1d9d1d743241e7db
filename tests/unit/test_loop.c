/*
 * test_loop: the event loop (loop.c) on real descriptors. Timers: many fire
 * in deadline order, equal deadlines in start order, a timer re-armed with
 * 0 ms from its own callback waits for the next iteration, timer_stop from
 * another timer's callback holds back a timer that was due in the same
 * pass, timer_start on an active timer moves it, and a few thousand random
 * starts and stops (fixed seed) against a sorted reference keep the heap in
 * order. Releases run after the whole batch, once however often queued. A
 * watcher unregistered earlier in a batch gets none of that batch's events;
 * an unchanged mask costs no syscall, mask 0 unregisters, and hang-ups and
 * errors arrive as read/write within the mask with LOOP_ERROR. Signals
 * arrive through loop_signal.
 * Nothing asserts how long anything took: order and counts only, with
 * generous bounds on waiting so a stall fails instead of hanging.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "net.h"

#include "unit_util.h"

#define GUARD_MS 2000 /* bound on any wait; nothing here should take 1% of it */

static int
setup(void **state)
{
	struct loop *loop = loop_new();

	if (!loop)
		return -1;
	*state = loop;
	return 0;
}

static int
teardown(void **state)
{
	loop_free(*state);
	return 0;
}

/* --- a bank of timers with a reference model -------------------------------- */

/*
 * Timers whose expected firing order the test computes on its own: between
 * two drains the loop does not run, so every timer started meanwhile has
 * the deadline "now + ms" for one cached now, and the loop must fire them
 * sorted by (ms, start sequence).
 */
#define BANK_N 64
#define BANK_MAX_MS 3 /* the randomized test's longest timer */

struct bank;

struct btimer {
	struct timer t;
	struct bank *b;
	size_t id;
	bool armed;   /* reference: started and neither stopped nor fired */
	uint64_t ms;  /* reference key: ms at the last start ... */
	uint64_t seq; /* ... and the order of that start */
};

struct bank {
	struct loop *loop;
	struct btimer bt[BANK_N];
	uint64_t seq;
	size_t fired[BANK_N]; /* ids in firing order since the last drain */
	size_t nfired;
	size_t want; /* timers the current drain waits for */
};

static void
bank_on_timer(struct loop *loop, void *arg)
{
	struct btimer *bt = arg;
	struct bank *b = bt->b;

	if (!bt->armed)
		fail_msg("timer %zu fired but was not armed", bt->id);
	assert_true(b->nfired < BANK_N);
	b->fired[b->nfired++] = bt->id;
	bt->armed = false;
}

static void
bank_init(struct bank *b, struct loop *loop)
{
	memset(b, 0, sizeof(*b));
	b->loop = loop;
	for (size_t i = 0; i < BANK_N; i++) {
		b->bt[i].b = b;
		b->bt[i].id = i;
		timer_init(&b->bt[i].t, bank_on_timer, &b->bt[i]);
	}
}

static void
bank_start(struct bank *b, size_t i, uint64_t ms)
{
	timer_start(b->loop, &b->bt[i].t, ms);
	b->bt[i].armed = true;
	b->bt[i].ms = ms;
	b->bt[i].seq = ++b->seq;
}

static void
bank_stop(struct bank *b, size_t i)
{
	timer_stop(b->loop, &b->bt[i].t);
	b->bt[i].armed = false;
}

static size_t
bank_armed(const struct bank *b)
{
	size_t n = 0;

	for (size_t i = 0; i < BANK_N; i++)
		n += b->bt[i].armed;
	return n;
}

/* The timer at heap position pos (one must be there). */
static size_t
bank_at(const struct bank *b, size_t pos)
{
	for (size_t i = 0; i < BANK_N; i++)
		if (b->bt[i].t.heap_index == pos)
			return i;
	fail_msg("no timer at heap position %zu", pos);
	return BANK_N;
}

/* The loop's bookkeeping agrees with the reference: exactly the armed
 * timers are active, and they hold the heap positions 0..n-1 once each. */
static void
bank_check(const struct bank *b)
{
	size_t n = bank_armed(b);
	bool seen[BANK_N] = { false };

	for (size_t i = 0; i < BANK_N; i++) {
		const struct timer *t = &b->bt[i].t;

		assert_int_equal(timer_active(t), b->bt[i].armed);
		if (!timer_active(t))
			continue;
		assert_true(t->heap_index < n);
		assert_false(seen[t->heap_index]);
		seen[t->heap_index] = true;
	}
}

/* Timer x must fire after timer y. */
static bool
bank_after(const struct bank *b, size_t x, size_t y)
{
	const struct btimer *tx = &b->bt[x], *ty = &b->bt[y];

	return tx->ms > ty->ms || (tx->ms == ty->ms && tx->seq > ty->seq);
}

static bool
bank_all_fired(void *arg)
{
	const struct bank *b = arg;

	return b->nfired >= b->want;
}

/* Runs the loop until every armed timer fired; they must have fired in
 * (ms, seq) order, each once, and no other timer may fire after them. */
static void
bank_drain(struct bank *b)
{
	size_t want[BANK_N], n = 0;

	bank_check(b);
	/* The reference: the armed timers sorted by (ms, seq). */
	for (size_t i = 0; i < BANK_N; i++) {
		size_t k;

		if (!b->bt[i].armed)
			continue;
		for (k = n++; k > 0 && bank_after(b, want[k - 1], i); k--)
			want[k] = want[k - 1];
		want[k] = i;
	}
	b->nfired = 0;
	b->want = n;
	if (!unit_run_until(b->loop, bank_all_fired, b, GUARD_MS))
		fail_msg("%zu of %zu timers fired", b->nfired, n);
	/* Past every deadline of this round: a stale heap entry would fire. */
	unit_run_for(b->loop, BANK_MAX_MS + 2, UNIT_RUN_WAIT_MS);
	assert_int_equal(b->nfired, n);
	for (size_t i = 0; i < n; i++)
		if (b->fired[i] != want[i])
			fail_msg("firing %zu: timer %zu (ms %llu, seq %llu), want timer %zu "
				 "(ms %llu, seq %llu)",
				i, b->fired[i], (unsigned long long)b->bt[b->fired[i]].ms,
				(unsigned long long)b->bt[b->fired[i]].seq, want[i],
				(unsigned long long)b->bt[want[i]].ms,
				(unsigned long long)b->bt[want[i]].seq);
	bank_check(b);
}

/* --- timers --------------------------------------------------------------- */

static void
test_timers_fire_in_deadline_order(void **state)
{
	struct bank b;

	/* Started in an order unrelated to their deadlines (a stride through
	 * 0..BANK_N-1), 0 to 15 ms, so the heap must reorder them. */
	bank_init(&b, *state);
	for (size_t i = 0; i < BANK_N; i++) {
		size_t id = (i * 37) % BANK_N;

		bank_start(&b, id, (id * 7) % 16);
	}
	bank_drain(&b);
	assert_int_equal(b.nfired, BANK_N);
}

static void
test_equal_deadlines_fire_in_start_order(void **state)
{
	struct bank b;

	/* One deadline for all, started in an order unrelated to their ids
	 * or addresses: the sequence number alone decides (FIFO). */
	bank_init(&b, *state);
	for (size_t i = 0; i < BANK_N; i++)
		bank_start(&b, (i * 29 + 5) % BANK_N, 2);
	bank_drain(&b);
	for (size_t i = 0; i < BANK_N; i++)
		assert_int_equal(b.fired[i], (i * 29 + 5) % BANK_N);
}

static void
test_timer_start_on_an_active_timer_moves_it(void **state)
{
	struct bank b;

	bank_init(&b, *state);
	/* Restarted with the same delay, a timer goes behind its equals. */
	for (size_t i = 0; i < 5; i++)
		bank_start(&b, i, 2);
	bank_start(&b, 0, 2);
	/* Earlier, and later: it moves within the heap, one entry each. */
	bank_start(&b, 3, 0);
	bank_start(&b, 1, 3);
	bank_drain(&b);
	assert_int_equal(b.nfired, 5);
	assert_int_equal(b.fired[0], 3);
	assert_int_equal(b.fired[1], 2);
	assert_int_equal(b.fired[2], 4);
	assert_int_equal(b.fired[3], 0);
	assert_int_equal(b.fired[4], 1);

	/* Moved far out, a due timer does not fire. */
	bank_start(&b, 7, 0);
	bank_start(&b, 7, 60000);
	unit_run_for(b.loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(b.nfired, 5);
	assert_true(timer_active(&b.bt[7].t));
	bank_stop(&b, 7);
	bank_check(&b);
}

static void
test_timer_stop_of_only_first_last_and_middle_keeps_order(void **state)
{
	static const uint64_t ms[9] = { 3, 1, 2, 0, 3, 1, 2, 0, 1 };
	struct bank b;
	size_t n;

	bank_init(&b, *state);
	/* The only one. */
	bank_start(&b, 0, 0);
	assert_int_equal(b.bt[0].t.heap_index, 0);
	bank_stop(&b, 0);
	bank_check(&b);
	bank_drain(&b);
	assert_int_equal(b.nfired, 0);

	for (size_t i = 0; i < 9; i++)
		bank_start(&b, i, ms[i]);
	bank_check(&b);
	/* The first (the root) ... */
	bank_stop(&b, bank_at(&b, 0));
	bank_check(&b);
	/* ... the last ... */
	n = bank_armed(&b);
	bank_stop(&b, bank_at(&b, n - 1));
	bank_check(&b);
	/* ... and one in the middle, with children below it. */
	bank_stop(&b, bank_at(&b, 1));
	bank_check(&b);
	bank_drain(&b);
	assert_int_equal(b.nfired, 6);
}

static uint64_t
xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
test_random_starts_and_stops_match_a_sorted_reference(void **state)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL; /* fixed: a failure replays */
	struct bank b;
	size_t ops = 0;

	bank_init(&b, *state);
	/* Starts outweigh stops so the heap holds about half the bank (a
	 * few levels deep) before each round drains it. */
	for (unsigned round = 0; round < 20; round++) {
		for (unsigned k = 0; k < 200; k++, ops++) {
			uint64_t r = xorshift64(&rng);
			size_t i = (size_t)(r >> 8) % BANK_N, n = bank_armed(&b), at;

			switch (r % 8) {
			case 0:
			case 1:
			case 2:
			case 3:
			case 4:
				/* Start, or move an active one. */
				bank_start(&b, i, (r >> 32) % (BANK_MAX_MS + 1));
				break;
			case 5:
				/* Stop any (an idle one: a no-op). */
				bank_stop(&b, i);
				break;
			default:
				/* Stop the first, the last, or one in the middle. */
				at = (r >> 16) % 3 == 0 ? 0 : (r >> 16) % 3 == 1 ? n - 1 : n / 2;
				if (n > 0)
					bank_stop(&b, bank_at(&b, at));
				break;
			}
			bank_check(&b);
		}
		bank_drain(&b);
	}
	assert_int_equal(ops, 4000);
}

struct rearm {
	struct timer t;
	unsigned calls;
	unsigned until; /* re-arms with 0 ms while calls < until */
};

static void
on_rearm(struct loop *loop, void *arg)
{
	struct rearm *r = arg;

	r->calls++;
	if (r->calls < r->until)
		timer_start(loop, &r->t, 0);
}

static void
test_timer_rearmed_with_zero_from_its_callback_runs_next_iteration(void **state)
{
	struct loop *loop = *state;
	struct rearm r = { .until = 3 };

	timer_init(&r.t, on_rearm, &r);
	timer_start(loop, &r.t, 0);
	/* Once per iteration, not again and again within the pass. */
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(loop_run_once(loop, 0), 0);
		assert_int_equal(r.calls, i);
	}
	assert_false(timer_active(&r.t));
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(r.calls, 3);
}

struct stopper {
	struct timer t;
	unsigned calls;
	struct stopper *victim; /* stopped from this one's callback */
};

static void
on_stopper(struct loop *loop, void *arg)
{
	struct stopper *s = arg;

	s->calls++;
	if (s->victim)
		timer_stop(loop, &s->victim->t);
}

static void
test_timer_stop_from_another_callback_holds_back_a_due_timer(void **state)
{
	struct loop *loop = *state;
	struct stopper a = { 0 }, b = { 0 };

	/* Both due in the same pass, a first (started first). */
	timer_init(&a.t, on_stopper, &a);
	timer_init(&b.t, on_stopper, &b);
	a.victim = &b;
	timer_start(loop, &a.t, 0);
	timer_start(loop, &b.t, 0);
	assert_int_equal(loop_run_once(loop, 0), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 0);
	assert_false(timer_active(&b.t));
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 0);
}

/* --- watchers, batches and releases -------------------------------------------- */

/* One end of a socketpair, watched for reading; the test writes into the
 * other end (peer) to make it readable. */
struct io {
	struct loop *loop;
	struct watcher w;
	int fd, peer;
	unsigned calls;
	unsigned first_events; /* what the first call got */
	bool closed;           /* unregistered and closed by the other */
	struct io *other;      /* its watcher is closed by whichever runs first */
	struct release *rel;   /* queued from this callback (twice) */
	struct batch *batch;
	bool reuse;   /* re-register the other with a fresh fd */
	int fresh[2]; /* that fresh socketpair, when this one was reused */
};

struct batch {
	unsigned events;   /* io callbacks so far */
	unsigned releases; /* release callbacks so far */
	unsigned events_at_release;
	bool timer_at_release;
	struct timer t;
	bool timer_fired;
};

static void
socket_pair(int fd[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
}

static void
on_release(void *arg)
{
	struct batch *bt = arg;

	/* Queued twice, the release list would be a cycle: fail rather than
	 * spin in it. */
	if (bt->releases++ > 0)
		fail_msg("release ran %u times", bt->releases);
	bt->events_at_release = bt->events;
	bt->timer_at_release = bt->timer_fired;
}

static void
on_batch_timer(struct loop *loop, void *arg)
{
	struct batch *bt = arg;

	bt->timer_fired = true;
}

static void
on_io(struct loop *loop, unsigned events, void *arg)
{
	struct io *io = arg;
	struct io *o = io->other;
	char c;

	if (io->calls++ == 0)
		io->first_events = events;
	if (io->batch)
		io->batch->events++;
	/* Drained, so level triggering does not call again. */
	while (read(io->w.fd, &c, 1) == 1)
		continue;
	if (io->rel) {
		loop_release(loop, io->rel, on_release, io->batch);
		loop_release(loop, io->rel, on_release, io->batch);
	}
	if (o && !o->closed && !io->closed) {
		/* What a close does: unregister at once, close the fd. */
		loop_unwatch(loop, &o->w);
		close(o->fd);
		o->closed = true;
		if (io->reuse) {
			/* The same struct watcher, a new fd with nothing to read. */
			socket_pair(o->fresh);
			o->fd = o->fresh[0];
			watcher_init(&o->w, o->fd, on_io, o);
			assert_int_equal(loop_watch(loop, &o->w, LOOP_READ), 0);
		}
	}
}

static void
io_open(struct io *io, struct loop *loop)
{
	int fd[2];

	memset(io, 0, sizeof(*io));
	io->loop = loop;
	io->fresh[0] = io->fresh[1] = -1;
	socket_pair(fd);
	io->fd = fd[0];
	io->peer = fd[1];
	watcher_init(&io->w, io->fd, on_io, io);
	assert_int_equal(loop_watch(loop, &io->w, LOOP_READ), 0);
}

static void
io_make_readable(struct io *io)
{
	assert_int_equal(write(io->peer, "x", 1), 1);
}

/* Two watched socketpairs, each set to close the other's watcher from its
 * callback, both readable before the loop looks: one batch holds both
 * events, and whichever callback runs first closes the other. */
static void
io_open_crossed(struct io *a, struct io *b, struct loop *loop)
{
	io_open(a, loop);
	io_open(b, loop);
	a->other = b;
	b->other = a;
	io_make_readable(a);
	io_make_readable(b);
}

static void
io_close(struct io *io)
{
	loop_unwatch(io->loop, &io->w);
	if (!io->closed)
		close(io->fd);
	close(io->peer);
	/* Reused: fd is fresh[0]. */
	if (io->fresh[0] >= 0) {
		close(io->fresh[0]);
		close(io->fresh[1]);
	}
}

static void
test_release_runs_after_the_batch_and_once(void **state)
{
	struct loop *loop = *state;
	struct batch bt = { 0 };
	struct release rel = { 0 };
	struct io a, b;

	io_open(&a, loop);
	io_open(&b, loop);
	a.batch = b.batch = &bt;
	/* Both callbacks queue the same release, each twice. */
	a.rel = b.rel = &rel;
	timer_init(&bt.t, on_batch_timer, &bt);
	timer_start(loop, &bt.t, 0);
	io_make_readable(&a);
	io_make_readable(&b);
	assert_int_equal(loop_run_once(loop, GUARD_MS), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(bt.releases, 1);
	/* Last in the pass: after both events and the timer due in it. */
	assert_int_equal(bt.events_at_release, 2);
	assert_true(bt.timer_at_release);
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(bt.releases, 1);
	io_close(&a);
	io_close(&b);
}

static void
test_loop_free_runs_pending_releases(void **state)
{
	struct loop *loop = loop_new();
	struct batch bt = { 0 };
	struct release rel = { 0 };

	assert_non_null(loop);
	loop_release(loop, &rel, on_release, &bt);
	loop_release(loop, &rel, on_release, &bt);
	assert_int_equal(bt.releases, 0);
	loop_free(loop);
	assert_int_equal(bt.releases, 1);
}

static void
test_watcher_closed_earlier_in_batch_gets_no_event(void **state)
{
	struct loop *loop = *state;
	struct io a, b;

	io_open_crossed(&a, &b, loop);
	assert_int_equal(loop_run_once(loop, GUARD_MS), 0);
	assert_int_equal(a.calls + b.calls, 1);
	assert_true(a.closed != b.closed);
	assert_int_equal((a.closed ? a : b).calls, 0);
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(a.calls + b.calls, 1);
	io_close(&a);
	io_close(&b);
}

/*
 * The stale event of a watcher that an earlier callback of the same batch
 * closed and registered again for a new fd would still reach it
 * (registered is true again): the watcher's generation, checked in
 * loop_iterate, drops it (issue 16).
 */
static void
test_watcher_reused_in_batch_gets_no_stale_event(void **state)
{
	struct loop *loop = *state;
	struct io a, b;
	struct io *reused;

	io_open_crossed(&a, &b, loop);
	a.reuse = b.reuse = true;
	assert_int_equal(loop_run_once(loop, GUARD_MS), 0);
	assert_true(a.closed != b.closed);
	reused = a.closed ? &a : &b;
	/* Registered again, for a socket with nothing to read: the event of
	 * the closed one must not reach it. */
	assert_true(reused->w.registered);
	if (reused->calls != 0)
		fail_msg("the closed fd's event (events %#x) reached the watcher "
			 "registered again for a new fd",
			reused->first_events);
	assert_int_equal(a.calls + b.calls, 1);
	io_close(&a);
	io_close(&b);
}

static void
test_watch_with_an_unchanged_mask_makes_no_syscall(void **state)
{
	struct loop *loop = *state;
	struct io a;

	io_open(&a, loop);
	/* Closing the fd takes it out of the epoll set behind the loop's
	 * back: only a call that makes no epoll_ctl can still succeed. */
	close(a.fd);
	assert_int_equal(loop_watch(loop, &a.w, LOOP_READ), 0);
	assert_true(a.w.registered);
	assert_int_equal(a.w.mask, LOOP_READ);
	errno = 0;
	assert_int_equal(loop_watch(loop, &a.w, LOOP_READ | LOOP_WRITE), -1);
	assert_int_equal(errno, EBADF);
	/* A failed change changes nothing. */
	assert_int_equal(a.w.mask, LOOP_READ);
	loop_unwatch_closing(loop, &a.w);
	assert_false(a.w.registered);
	close(a.peer);
}

static void
test_watch_mask_zero_unregisters(void **state)
{
	struct loop *loop = *state;
	struct io a;

	io_open(&a, loop);
	io_make_readable(&a);
	assert_int_equal(loop_watch(loop, &a.w, 0), 0);
	assert_false(a.w.registered);
	assert_int_equal(a.w.mask, 0);
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(a.calls, 0);
	/* Registered again (an ADD, not a MOD), the waiting byte shows up. */
	assert_int_equal(loop_watch(loop, &a.w, LOOP_READ), 0);
	assert_true(a.w.registered);
	assert_int_equal(loop_run_once(loop, GUARD_MS), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.first_events, LOOP_READ);
	io_close(&a);
}

/* Records the first events and unregisters (a hang-up is level-triggered). */
struct seen {
	struct watcher w;
	unsigned calls;
	unsigned events;
};

static void
on_seen(struct loop *loop, unsigned events, void *arg)
{
	struct seen *s = arg;

	if (s->calls++ == 0)
		s->events = events;
	loop_unwatch(loop, &s->w);
}

static bool
seen_called(void *arg)
{
	const struct seen *s = arg;

	return s->calls > 0;
}

/* What a watcher with mask gets for fd; the watcher is gone after. */
static unsigned
first_events(struct loop *loop, int fd, unsigned mask)
{
	struct seen s = { .calls = 0 };

	watcher_init(&s.w, fd, on_seen, &s);
	assert_int_equal(loop_watch(loop, &s.w, mask), 0);
	if (!unit_run_until(loop, seen_called, &s, GUARD_MS))
		fail_msg("no event for mask %u", mask);
	assert_false(s.w.registered);
	return s.events;
}

static void
test_hangup_is_read_and_write_within_the_mask_with_error(void **state)
{
	static const unsigned masks[] = { LOOP_READ, LOOP_WRITE, LOOP_READ | LOOP_WRITE };
	struct loop *loop = *state;
	int fd[2];

	/* Plain readiness carries no LOOP_ERROR. */
	socket_pair(fd);
	assert_int_equal(write(fd[1], "x", 1), 1);
	assert_int_equal(first_events(loop, fd[0], LOOP_READ), LOOP_READ);
	close(fd[0]);
	close(fd[1]);
	/* The peer gone: EPOLLHUP, which epoll reports whatever was asked. */
	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		socket_pair(fd);
		close(fd[1]);
		assert_int_equal(first_events(loop, fd[0], masks[i]), masks[i] | LOOP_ERROR);
		close(fd[0]);
	}
}

static void
test_socket_error_is_read_with_error_for_a_reader(void **state)
{
	struct loop *loop = *state;
	union sockaddr_any closed = unit_addr("127.0.0.1", 0), any = unit_addr("127.0.0.1", 0);
	socklen_t len = sizeof(closed.sin);
	int fd, probe;

	/* A port nobody listens on: bound, looked up, closed again. */
	probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(probe >= 0);
	assert_int_equal(bind(probe, &any.sa, sizeof(any.sin)), 0);
	assert_int_equal(getsockname(probe, &closed.sa, &len), 0);
	close(probe);
	/* A datagram to it comes back as ICMP port unreachable: EPOLLERR
	 * (ECONNREFUSED) on a socket with nothing to read, no hang-up. */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &closed.sa, sizeof(closed.sin)), 0);
	assert_int_equal(send(fd, "x", 1, 0), 1);
	assert_int_equal(first_events(loop, fd, LOOP_READ), LOOP_READ | LOOP_ERROR);
	close(fd);
}

/* --- signals ----------------------------------------------------------------- */

struct sig {
	unsigned calls;
	int signo;
};

static void
on_signal(struct loop *loop, int signo, void *arg)
{
	struct sig *s = arg;

	s->calls++;
	s->signo = signo;
}

static bool
signal_seen(void *arg)
{
	const struct sig *s = arg;

	return s->calls > 0;
}

static void
test_signal_is_delivered_from_the_loop(void **state)
{
	struct loop *loop = *state;
	struct sig s = { 0 };
	sigset_t before;

	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &before), 0);
	assert_int_equal(loop_signal(loop, SIGUSR2, on_signal, &s), 0);
	assert_int_equal(raise(SIGUSR2), 0);
	/* Blocked and pending: nothing runs until the loop reads it. */
	assert_int_equal(s.calls, 0);
	assert_true(unit_run_until(loop, signal_seen, &s, GUARD_MS));
	assert_int_equal(s.signo, SIGUSR2);
	unit_run_for(loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(s.calls, 1);
	/* Consumed: unblocking again raises nothing. */
	assert_int_equal(sigprocmask(SIG_SETMASK, &before, NULL), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_timers_fire_in_deadline_order),
		T(test_equal_deadlines_fire_in_start_order),
		T(test_timer_start_on_an_active_timer_moves_it),
		T(test_timer_stop_of_only_first_last_and_middle_keeps_order),
		T(test_random_starts_and_stops_match_a_sorted_reference),
		T(test_timer_rearmed_with_zero_from_its_callback_runs_next_iteration),
		T(test_timer_stop_from_another_callback_holds_back_a_due_timer),
		T(test_release_runs_after_the_batch_and_once),
		T(test_loop_free_runs_pending_releases),
		T(test_watcher_closed_earlier_in_batch_gets_no_event),
		T(test_watcher_reused_in_batch_gets_no_stale_event),
		T(test_watch_with_an_unchanged_mask_makes_no_syscall),
		T(test_watch_mask_zero_unregisters),
		T(test_hangup_is_read_and_write_within_the_mask_with_error),
		T(test_socket_error_is_read_with_error_for_a_reader),
		T(test_signal_is_delivered_from_the_loop),
	};

	log_init(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
