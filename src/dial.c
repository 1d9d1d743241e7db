/*
 * dial: connects one address at a time. A readiness event ends an attempt
 * (connected, or refused and on to the next address); the attempt's timer
 * ends it too (on to the next). The owner keeps the whole deadline and
 * decides what a failure means to the client.
 */
#include "dial.h"

#include <errno.h>
#include <unistd.h>

#include "net.h"

/* The shortest share of the budget one address gets while more than that
 * is left. */
#define DIAL_MIN_ATTEMPT_MS 250

static void dial_on_io(struct loop *loop, unsigned events, void *arg);
static void dial_on_timer(struct loop *loop, void *arg);

static void
dial_close_attempt(struct dial *d)
{
	if (d->w->fd < 0)
		return;
	loop_unwatch_closing(d->loop, d->w);
	close(d->w->fd);
	d->w->fd = -1;
}

static const union sockaddr_any *
dial_source(const struct dial *d, int family)
{
	return family == AF_INET6 ? d->opt.external6 : d->opt.external4;
}

/* Starts the next attempt the hook allows. DIAL_PENDING when one runs. */
static enum dial_result
dial_next(struct dial *d)
{
	dial_close_attempt(d);
	timer_stop(d->loop, &d->timer);
	while (d->next < d->naddrs) {
		union sockaddr_any to = d->addrs[d->next++];
		uint64_t now = loop_now(d->loop), left, share;
		int fd;

		if (now >= d->deadline_ms)
			break;
		addr_set_port(&to, d->port);
		if (d->opt.allow && !d->opt.allow(&to, d->opt.allow_arg)) {
			d->denied = true;
			continue;
		}
		fd = net_connect_start(&to, dial_source(d, to.sa.sa_family), NULL);
		if (fd < 0) {
			d->last_err = errno;
			continue;
		}
		watcher_init(d->w, fd, dial_on_io, d);
		if (loop_watch(d->loop, d->w, LOOP_WRITE) < 0) {
			d->last_err = errno;
			close(fd);
			d->w->fd = -1;
			continue;
		}
		left = d->deadline_ms - now;
		share = left / (d->naddrs - d->next + 1);
		timer_start(d->loop, &d->timer,
			share < DIAL_MIN_ATTEMPT_MS && left > DIAL_MIN_ATTEMPT_MS
				? DIAL_MIN_ATTEMPT_MS
				: share);
		return DIAL_PENDING;
	}
	if (d->denied && d->last_err == 0)
		return DIAL_DENIED;
	if (d->last_err == 0)
		d->last_err = ETIMEDOUT;
	return DIAL_FAILED;
}

/* Reports a result other than DIAL_PENDING and stops. */
static void
dial_report(struct dial *d, enum dial_result r, const union sockaddr_any *bnd)
{
	d->stopped = true;
	timer_stop(d->loop, &d->timer);
	d->done(r, d->last_err, bnd, d->arg);
}

static void
dial_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct dial *d = arg;
	union sockaddr_any bnd;
	enum dial_result r;
	int err;

	/* SO_ERROR has something to say only with EPOLLERR or EPOLLHUP: plain
	 * EPOLLOUT is reported once the connection is up (tcp_poll), so a
	 * getsockopt per session is saved. */
	err = (events & LOOP_ERROR) ? net_connect_result(d->w->fd) : 0;
	if (err == 0 && net_local_addr(d->w->fd, &bnd) < 0)
		err = errno;
	if (err == 0) {
		(void)net_set_nodelay(d->w->fd);
		dial_report(d, DIAL_CONNECTED, &bnd);
		return;
	}
	d->last_err = err;
	if ((r = dial_next(d)) != DIAL_PENDING)
		dial_report(d, r, NULL);
}

static void
dial_on_timer(struct loop *loop, void *arg)
{
	struct dial *d = arg;
	enum dial_result r;

	d->last_err = ETIMEDOUT;
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
	d->naddrs = naddrs;
	d->next = 0;
	d->port = port;
	d->deadline_ms = deadline_ms;
	d->last_err = 0;
	d->denied = false;
	d->stopped = false;
	d->opt = *opt;
	d->done = done;
	d->arg = arg;
	w->fd = -1;
	timer_init(&d->timer, dial_on_timer, d);
	r = dial_next(d);
	if (r != DIAL_PENDING)
		d->stopped = true;
	return r;
}

void
dial_stop(struct dial *d)
{
	if (d->stopped)
		return;
	d->stopped = true;
	dial_close_attempt(d);
	timer_stop(d->loop, &d->timer);
}
