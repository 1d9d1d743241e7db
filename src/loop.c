/*
 * loop: the one event loop of a socks5d process. epoll (level-triggered)
 * for readiness, a binary min-heap of embedded timers, a clock read once per
 * iteration, signals through one signalfd, and a release list that defers
 * frees until the current batch of events has been dispatched.
 *
 * Timers wake the loop through a timerfd armed for the earliest deadline,
 * not through epoll_wait's timeout: a timeout makes the kernel start and
 * cancel an hrtimer on every sleep, which measured as about 5% of a
 * relayed round trip in the latency bench. The timerfd is re-armed only
 * when the earliest deadline moves earlier; when it fires for a timer that
 * has since been stopped, the loop just re-arms for the next one.
 */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

_Static_assert(LOOP_GENERATIONS >= 4, "watchers must be aligned for the generation bits");
#define LOOP_GENERATION_MASK ((uintptr_t)LOOP_GENERATIONS - 1)

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_SIGNALS 16
#define HEAP_IDLE ((size_t)-1)

struct loop_signal {
	int signo;
	loop_signal_cb cb;
	void *arg;
};

struct loop {
	int epfd;
	bool stopping;
	uint64_t now_ms;
	uint64_t timer_seq;

	struct timer **heap; /* min-heap by (deadline, seq) */
	size_t heap_len, heap_cap;

	struct release *release_head;

	int tfd; /* timerfd; -1: epoll_wait's timeout instead */
	struct watcher tfd_watcher;
	uint64_t armed_ms; /* deadline tfd is armed for; 0: not armed */

	int sigfd;
	struct watcher sig_watcher;
	sigset_t sigmask;
	struct loop_signal signals[LOOP_MAX_SIGNALS];
	size_t nsignals;
};

static uint64_t
monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
on_timerfd(struct loop *loop, unsigned events, void *arg)
{
	uint64_t expirations;

	/* Only clears the readiness; run_timers after the batch does the work. */
	if (read(loop->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_warn("timerfd read");
	loop->armed_ms = 0;
}

struct loop *
loop_new(void)
{
	struct loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return NULL;
	}
	loop->sigfd = -1;
	sigemptyset(&loop->sigmask);
	loop->now_ms = monotonic_ms();
	loop->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (loop->tfd >= 0) {
		watcher_init(&loop->tfd_watcher, loop->tfd, on_timerfd, loop);
		if (loop_watch(loop, &loop->tfd_watcher, LOOP_READ) < 0) {
			close(loop->tfd);
			loop->tfd = -1;
		}
	}
	return loop;
}

static void run_releases(struct loop *loop);

void
loop_free(struct loop *loop)
{
	if (!loop)
		return;
	run_releases(loop);
	if (loop->sigfd >= 0)
		close(loop->sigfd);
	if (loop->tfd >= 0)
		close(loop->tfd);
	close(loop->epfd);
	free(loop->heap);
	free(loop);
}

uint64_t
loop_now(const struct loop *loop)
{
	return loop->now_ms;
}

void
loop_update_time(struct loop *loop)
{
	loop->now_ms = monotonic_ms();
}

void
loop_stop(struct loop *loop)
{
	loop->stopping = true;
}

/* --- watchers ------------------------------------------------------------ */

void
watcher_init(struct watcher *w, int fd, loop_io_cb cb, void *arg)
{
	/* The generation is kept: see struct watcher. */
	w->fd = fd;
	w->mask = 0;
	w->registered = false;
	w->cb = cb;
	w->arg = arg;
}

void
watcher_set_callback(struct watcher *w, loop_io_cb cb, void *arg)
{
	w->cb = cb;
	w->arg = arg;
}

int
loop_watch(struct loop *loop, struct watcher *w, unsigned mask)
{
	struct epoll_event ev;

	if (w->registered && mask == w->mask)
		return 0;
	if (mask == 0) {
		loop_unwatch(loop, w);
		return 0;
	}
	if (!w->registered)
		w->generation = (uint8_t)((w->generation + 1) & LOOP_GENERATION_MASK);
	memset(&ev, 0, sizeof(ev));
	ev.events = ((mask & LOOP_READ) ? EPOLLIN | EPOLLRDHUP : 0) |
		((mask & LOOP_WRITE) ? EPOLLOUT : 0);
	ev.data.u64 = (uintptr_t)w | w->generation;
	if (epoll_ctl(loop->epfd, w->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) < 0)
		return -1;
	w->registered = true;
	w->mask = mask;
	return 0;
}

void
loop_unwatch(struct loop *loop, struct watcher *w)
{
	if (!w->registered)
		return;
	/* A failure here means the fd is already gone; nothing to undo. */
	(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->registered = false;
	w->mask = 0;
}

void
loop_unwatch_closing(struct loop *loop, struct watcher *w)
{
	w->registered = false;
	w->mask = 0;
}

/* --- timers: binary min-heap --------------------------------------------- */

static bool
timer_before(const struct timer *a, const struct timer *b)
{
	if (a->deadline_ms != b->deadline_ms)
		return a->deadline_ms < b->deadline_ms;
	return a->seq < b->seq;
}

static void
heap_set(struct loop *loop, size_t i, struct timer *t)
{
	loop->heap[i] = t;
	t->heap_index = i;
}

static void
heap_sift_up(struct loop *loop, size_t i)
{
	struct timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void
heap_sift_down(struct loop *loop, size_t i)
{
	struct timer *t = loop->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct timer *best = t;
		if (l < loop->heap_len && timer_before(loop->heap[l], best)) {
			m = l;
			best = loop->heap[l];
		}
		if (r < loop->heap_len && timer_before(loop->heap[r], best))
			m = r;
		if (m == i)
			break;
		heap_set(loop, i, loop->heap[m]);
		i = m;
	}
	heap_set(loop, i, t);
}

void
timer_init(struct timer *t, loop_timer_cb cb, void *arg)
{
	t->deadline_ms = 0;
	t->seq = 0;
	t->heap_index = HEAP_IDLE;
	t->cb = cb;
	t->arg = arg;
}

void
timer_stop(struct loop *loop, struct timer *t)
{
	size_t i = t->heap_index;
	struct timer *last;

	if (i == HEAP_IDLE)
		return;
	t->heap_index = HEAP_IDLE;
	last = loop->heap[--loop->heap_len];
	if (i == loop->heap_len)
		return;
	heap_set(loop, i, last);
	if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
		heap_sift_up(loop, i);
	else
		heap_sift_down(loop, i);
}

bool
timer_idle_expired(struct loop *loop, struct timer *t, uint64_t last_active_ms, unsigned idle_ms)
{
	uint64_t idle_for = loop->now_ms - last_active_ms;

	if (idle_for >= idle_ms)
		return true;
	timer_start(loop, t, idle_ms - idle_for);
	return false;
}

void
timer_start(struct loop *loop, struct timer *t, uint64_t ms)
{
	timer_stop(loop, t);
	if (loop->heap_len == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers. */
		struct timer **h = realloc(loop->heap, cap * sizeof(*h));
		if (!h) {
			/* Every timer here is a timeout that must fire; without
			 * room to keep it, no connection is safe. A clean exit
			 * (systemd restarts) beats running without timeouts. */
			fatalx("timer heap: out of memory");
		}
		loop->heap = h;
		loop->heap_cap = cap;
	}
	t->deadline_ms = loop->now_ms + ms;
	t->seq = ++loop->timer_seq;
	loop->heap[loop->heap_len] = t;
	t->heap_index = loop->heap_len++;
	heap_sift_up(loop, t->heap_index);
}

static int
next_timeout_ms(const struct loop *loop)
{
	uint64_t d;

	if (loop->release_head)
		return 0;
	if (loop->heap_len == 0)
		return -1;
	d = loop->heap[0]->deadline_ms;
	if (d <= loop->now_ms)
		return 0;
	d -= loop->now_ms;
	return d > 60000 ? 60000 : (int)d;
}

/* Arms the timerfd for the earliest deadline unless it already fires at or
 * before it. Returns 0, or -1 when the caller must use a timeout instead. */
static int
arm_timerfd(struct loop *loop)
{
	struct itimerspec its = { 0 };
	uint64_t want;

	if (loop->tfd < 0)
		return -1;
	if (loop->heap_len == 0)
		return 0;
	want = loop->heap[0]->deadline_ms;
	if (loop->armed_ms != 0 && loop->armed_ms <= want)
		return 0;
	its.it_value.tv_sec = (time_t)(want / 1000u);
	its.it_value.tv_nsec = (long)(want % 1000u) * 1000000L;
	if (timerfd_settime(loop->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -1;
	loop->armed_ms = want;
	return 0;
}

static void
run_timers(struct loop *loop)
{
	/* Only timers due at the start of this pass: a callback that re-arms
	 * with 0 ms runs on the next iteration, never in a tight loop here. */
	uint64_t seq_limit = loop->timer_seq;

	while (loop->heap_len > 0) {
		struct timer *t = loop->heap[0];
		if (t->deadline_ms > loop->now_ms || t->seq > seq_limit)
			break;
		timer_stop(loop, t);
		t->cb(loop, t->arg);
	}
}

/* --- release list -------------------------------------------------------- */

void
loop_release(struct loop *loop, struct release *r, loop_release_cb cb, void *arg)
{
	if (r->queued)
		return;
	r->queued = true;
	r->cb = cb;
	r->arg = arg;
	r->next = loop->release_head;
	loop->release_head = r;
}

static void
run_releases(struct loop *loop)
{
	while (loop->release_head) {
		struct release *r = loop->release_head;
		loop->release_head = r->next;
		r->cb(r->arg);
	}
}

/* --- signals ------------------------------------------------------------- */

static void
on_signalfd(struct loop *loop, unsigned events, void *arg)
{
	struct signalfd_siginfo si;

	for (;;) {
		ssize_t n = read(loop->sigfd, &si, sizeof(si));
		if (n != (ssize_t)sizeof(si))
			return;
		for (size_t i = 0; i < loop->nsignals; i++)
			if (loop->signals[i].signo == (int)si.ssi_signo)
				loop->signals[i].cb(loop, (int)si.ssi_signo, loop->signals[i].arg);
	}
}

int
loop_signal(struct loop *loop, int signo, loop_signal_cb cb, void *arg)
{
	int fd;

	if (loop->nsignals == LOOP_MAX_SIGNALS) {
		errno = ENOSPC;
		return -1;
	}
	sigaddset(&loop->sigmask, signo);
	if (sigprocmask(SIG_BLOCK, &loop->sigmask, NULL) < 0)
		return -1;
	fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (loop->sigfd < 0) {
		loop->sigfd = fd;
		watcher_init(&loop->sig_watcher, fd, on_signalfd, NULL);
		if (loop_watch(loop, &loop->sig_watcher, LOOP_READ) < 0)
			return -1;
	}
	loop->signals[loop->nsignals].signo = signo;
	loop->signals[loop->nsignals].cb = cb;
	loop->signals[loop->nsignals].arg = arg;
	loop->nsignals++;
	return 0;
}

/* --- run ----------------------------------------------------------------- */

/* One pass: wait (bounded by the next timer and max_wait_ms, -1 = no
 * bound), dispatch, timers, releases. */
static int
loop_iterate(struct loop *loop, int max_wait_ms)
{
	struct epoll_event events[LOOP_MAX_EVENTS];
	int timeout = next_timeout_ms(loop), n;

	/* Nothing due now: the timerfd wakes us, epoll_wait need not. */
	if (timeout > 0 && arm_timerfd(loop) == 0)
		timeout = -1;
	if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
		timeout = max_wait_ms;
	n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		log_warn("epoll_wait");
		return -1;
	}
	loop->now_ms = monotonic_ms();
	for (int i = 0; i < n; i++) {
		struct watcher *w = (struct watcher *)(uintptr_t)(events[i].data.u64 &
			~LOOP_GENERATION_MASK);
		unsigned ev = 0;
		/* A watcher unregistered earlier in this batch (its owner
		 * closed) must not be called: its memory is still valid
		 * until run_releases, and registered tells us. One that was
		 * registered again since, for another fd, has moved on to a
		 * new generation: the event was for the old fd. */
		if (!w->registered || w->generation != (events[i].data.u64 & LOOP_GENERATION_MASK))
			continue;
		if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			ev |= LOOP_READ;
		if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			ev |= LOOP_WRITE;
		/* Errors and hang-ups arrive whatever the mask; the owner
		 * sees them through the directions it is waiting on, and
		 * LOOP_ERROR tells it that one came. */
		ev &= w->mask;
		if (ev)
			w->cb(loop,
				ev | ((events[i].events & (EPOLLHUP | EPOLLERR)) ? LOOP_ERROR : 0),
				w->arg);
	}
	run_timers(loop);
	run_releases(loop);
	return 0;
}

int
loop_run(struct loop *loop)
{
	loop->stopping = false;
	while (!loop->stopping)
		if (loop_iterate(loop, -1) < 0)
			return -1;
	run_releases(loop);
	return 0;
}

int
loop_run_once(struct loop *loop, int timeout_ms)
{
	return loop_iterate(loop, timeout_ms < 0 ? 0 : timeout_ms);
}
