/*
 * dial: connection attempts over an address list. A readiness event ends
 * an attempt: connected (the dial is over), or refused (the next address
 * starts at once). The timer starts the next address: after the Happy
 * Eyeballs delay, leaving the running attempts be; or, one at a time, when
 * the running attempt's share of the deadline is used up, closing it. The
 * owner keeps the whole deadline and decides what a failure means to the
 * client.
 */
#include "dial.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

/* One at a time: the shortest share of the budget one address gets while
 * more than that is left. */
#define DIAL_MIN_ATTEMPT_MS 250
/* Happy Eyeballs: the delay never drops below this to fit every address
 * into a short deadline (RFC 8305 §5: at least 10 ms). */
#define DIAL_MIN_DELAY_MS 10

/* The watchers of the attempts beyond the owner's one: released through
 * the loop, as events for them may come later in the batch. */
struct dial_spares {
	struct release rel;
	struct watcher w[DIAL_MAX_INFLIGHT - 1];
};

static void dial_on_io(struct loop *loop, unsigned events, void *arg);
static void dial_on_timer(struct loop *loop, void *arg);

/* Gives the attempts beyond the first their watchers. False when out of
 * memory: only the owner's watcher is there. */
static bool
dial_get_spares(struct dial *d)
{
	if (d->spares)
		return true;
	if ((d->spares = calloc(1, sizeof(*d->spares))) == NULL)
		return false;
	for (size_t i = 1; i < DIAL_MAX_INFLIGHT; i++) {
		d->att[i].w = &d->spares->w[i - 1];
		d->att[i].w->fd = -1;
	}
	return true;
}

static void
dial_put_spares(struct dial *d)
{
	if (!d->spares)
		return;
	loop_release(d->loop, &d->spares->rel, free, d->spares);
	d->spares = NULL;
	for (size_t i = 1; i < DIAL_MAX_INFLIGHT; i++)
		d->att[i].w = NULL;
}

static bool
dial_eyeballs(const struct dial *d)
{
	return d->opt.delay_ms > 0;
}

static void
dial_close_attempt(struct dial *d, struct dial_attempt *a)
{
	if (!a->busy)
		return;
	a->busy = false;
	loop_unwatch_closing(d->loop, a->w);
	close(a->w->fd);
	a->w->fd = -1;
}

static void
dial_close_all(struct dial *d)
{
	for (size_t i = 0; i < DIAL_MAX_INFLIGHT; i++)
		dial_close_attempt(d, &d->att[i]);
}

static size_t
dial_busy_count(const struct dial *d)
{
	size_t n = 0;

	for (size_t i = 0; i < DIAL_MAX_INFLIGHT; i++)
		n += d->att[i].busy;
	return n;
}

/* A free attempt, the one with the owner's watcher first; when all are
 * busy (or no other watchers can be had) the oldest is closed (it had the
 * longest chance) to make room. */
static struct dial_attempt *
dial_free_attempt(struct dial *d)
{
	struct dial_attempt *oldest = &d->att[0];
	size_t n = d->att[0].busy && dial_get_spares(d) ? DIAL_MAX_INFLIGHT : 1;

	for (size_t i = 0; i < n; i++) {
		if (!d->att[i].busy)
			return &d->att[i];
		if (d->att[i].started_ms < oldest->started_ms)
			oldest = &d->att[i];
	}
	d->last_err = ETIMEDOUT;
	dial_close_attempt(d, oldest);
	return oldest;
}

/* The family Happy Eyeballs starts with: the option's when the list has
 * an address of it, else the first address's. */
static int
dial_first_family(const struct dial *d)
{
	for (size_t i = 0; d->opt.first_family != AF_UNSPEC && i < d->naddrs; i++)
		if (d->addrs[i].sa.sa_family == d->opt.first_family)
			return d->opt.first_family;
	return d->naddrs ? d->addrs[0].sa.sa_family : AF_UNSPEC;
}

/* RFC 8305 §4: families interleaved, the first family's first; within a
 * family the resolver's order. Without Happy Eyeballs, the list as it is. */
static void
dial_order(struct dial *d)
{
	size_t n = 0, i4 = 0, i6 = 0;
	int first = dial_first_family(d);

	if (!dial_eyeballs(d)) {
		for (size_t i = 0; i < d->naddrs; i++)
			d->order[i] = (uint8_t)i;
		return;
	}
	/* i4 walks the first family's addresses, i6 the others'. */
	while (n < d->naddrs) {
		for (; i4 < d->naddrs && d->addrs[i4].sa.sa_family != first; i4++)
			;
		if (i4 < d->naddrs)
			d->order[n++] = (uint8_t)i4++;
		for (; i6 < d->naddrs && d->addrs[i6].sa.sa_family == first; i6++)
			;
		if (i6 < d->naddrs)
			d->order[n++] = (uint8_t)i6++;
	}
}

/* Starts an attempt to the next address the hook allows. True when one
 * runs; false when the list is done (every address failed at once or was
 * refused). */
static bool
dial_launch(struct dial *d)
{
	while (d->next < d->naddrs) {
		size_t idx = d->order[d->next++];
		union sockaddr_any to = d->addrs[idx];
		struct dial_attempt *a;
		struct dial_route route;
		int fd;

		addr_set_port(&to, d->port);
		memset(&route.from, 0, sizeof(route.from));
		egress_init(&route.egress);
		if (d->opt.route && !d->opt.route(&to, &route, d->opt.route_arg)) {
			d->denied = true;
			continue;
		}
		a = dial_free_attempt(d);
		fd = net_connect_start(&to,
			route.from.sa.sa_family == AF_UNSPEC ? NULL : &route.from, &route.egress);
		if (fd < 0) {
			d->last_err = errno;
			continue;
		}
		watcher_init(a->w, fd, dial_on_io, a);
		if (loop_watch(d->loop, a->w, LOOP_WRITE) < 0) {
			d->last_err = errno;
			close(fd);
			a->w->fd = -1;
			continue;
		}
		a->busy = true;
		a->route = route;
		a->index = idx;
		a->started_ms = loop_now(d->loop);
		return true;
	}
	return false;
}

/* Arms the timer after an attempt started: when the next one starts, or
 * (none left) the deadline. */
static void
dial_schedule(struct dial *d)
{
	uint64_t now = loop_now(d->loop);
	uint64_t left = d->deadline_ms > now ? d->deadline_ms - now : 0, wait;
	size_t after = d->naddrs - d->next; /* addresses not started yet */

	if (dial_eyeballs(d)) {
		/* Every address must start before the deadline. */
		wait = after ? left / (after + 1) : left;
		if (after && wait > d->opt.delay_ms)
			wait = d->opt.delay_ms;
		if (after && wait < DIAL_MIN_DELAY_MS)
			wait = DIAL_MIN_DELAY_MS;
	} else {
		wait = left / (after + 1);
		if (wait < DIAL_MIN_ATTEMPT_MS && left > DIAL_MIN_ATTEMPT_MS)
			wait = DIAL_MIN_ATTEMPT_MS;
	}
	timer_start(d->loop, &d->timer, wait);
}

/* The result when nothing runs and nothing is left to start. */
static enum dial_result
dial_exhausted(struct dial *d)
{
	if (d->denied && d->last_err == 0)
		return DIAL_DENIED;
	if (d->last_err == 0)
		d->last_err = ETIMEDOUT;
	return DIAL_FAILED;
}

/* Starts the next attempt (closing the running one first when one at a
 * time) and arms the timer. DIAL_PENDING while an attempt runs. */
static enum dial_result
dial_next(struct dial *d)
{
	timer_stop(d->loop, &d->timer);
	if (!dial_eyeballs(d))
		dial_close_all(d);
	if (loop_now(d->loop) < d->deadline_ms && dial_launch(d)) {
		dial_schedule(d);
		return DIAL_PENDING;
	}
	if (dial_busy_count(d) > 0) {
		/* Attempts run on; the timer keeps the deadline. */
		timer_start(d->loop, &d->timer,
			d->deadline_ms > loop_now(d->loop) ? d->deadline_ms - loop_now(d->loop)
							   : 0);
		return DIAL_PENDING;
	}
	return dial_exhausted(d);
}

/* Reports a result other than DIAL_PENDING and stops. */
static void
dial_report(struct dial *d, enum dial_result r, const union sockaddr_any *bnd)
{
	d->stopped = true;
	timer_stop(d->loop, &d->timer);
	dial_put_spares(d);
	d->done(r, d->last_err, bnd, d->arg);
}

/* a connected: the others go, its fd moves into the owner's watcher. */
static void
dial_win(struct dial *d, struct dial_attempt *a, const union sockaddr_any *bnd)
{
	a->busy = false;
	for (size_t i = 0; i < DIAL_MAX_INFLIGHT; i++)
		dial_close_attempt(d, &d->att[i]);
	if (a->w != d->w) {
		/* Another registration for the same fd would fail: the
		 * owner's watcher gets it unregistered. */
		int fd = a->w->fd;

		loop_unwatch(d->loop, a->w);
		a->w->fd = -1;
		watcher_init(d->w, fd, NULL, NULL);
	}
	d->connected = a->index;
	d->route = a->route;
	(void)net_set_nodelay(d->w->fd);
	dial_report(d, DIAL_CONNECTED, bnd);
}

static void
dial_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct dial_attempt *a = arg;
	struct dial *d = a->d;
	union sockaddr_any bnd;
	enum dial_result r;
	int err;

	if (d->stopped || !a->busy)
		return;
	/* SO_ERROR has something to say only with EPOLLERR or EPOLLHUP: plain
	 * EPOLLOUT is reported once the connection is up (tcp_poll), so a
	 * getsockopt per session is saved. */
	err = (events & LOOP_ERROR) ? net_connect_result(a->w->fd) : 0;
	if (err == 0 && net_local_addr(a->w->fd, &bnd) < 0)
		err = errno;
	if (err == 0) {
		dial_win(d, a, &bnd);
		return;
	}
	d->last_err = err;
	dial_close_attempt(d, a);
	if ((r = dial_next(d)) != DIAL_PENDING)
		dial_report(d, r, NULL);
}

static void
dial_on_timer(struct loop *loop, void *arg)
{
	struct dial *d = arg;
	enum dial_result r;

	if (loop_now(loop) >= d->deadline_ms || !dial_eyeballs(d)) {
		/* The running attempt's share (or the whole deadline) is up. */
		d->last_err = ETIMEDOUT;
		if (dial_eyeballs(d))
			dial_close_all(d);
	}
	if ((r = dial_next(d)) != DIAL_PENDING)
		dial_report(d, r, NULL);
}

enum dial_result
dial_start(struct dial *d, struct loop *loop, struct watcher *w, const union sockaddr_any *addrs,
	size_t naddrs, uint16_t port, uint64_t deadline_ms, const struct dial_options *opt,
	dial_done_cb done, void *arg)
{
	enum dial_result r;

	d->loop = loop;
	d->w = w;
	d->addrs = addrs;
	d->naddrs = naddrs < DIAL_MAX_ADDRS ? naddrs : DIAL_MAX_ADDRS;
	d->next = 0;
	d->port = port;
	d->deadline_ms = deadline_ms;
	d->last_err = 0;
	d->denied = false;
	d->stopped = false;
	d->opt = *opt;
	d->done = done;
	d->arg = arg;
	d->connected = 0;
	w->fd = -1;
	for (size_t i = 0; i < DIAL_MAX_INFLIGHT; i++) {
		struct dial_attempt *a = &d->att[i];

		a->d = d;
		a->busy = false;
		a->w = i == 0 ? w : NULL;
	}
	d->spares = NULL;
	timer_init(&d->timer, dial_on_timer, d);
	dial_order(d);
	r = dial_next(d);
	if (r != DIAL_PENDING) {
		d->stopped = true;
		dial_put_spares(d);
	}
	return r;
}

void
dial_stop(struct dial *d)
{
	if (d->stopped)
		return;
	d->stopped = true;
	dial_close_all(d);
	timer_stop(d->loop, &d->timer);
	dial_put_spares(d);
}
