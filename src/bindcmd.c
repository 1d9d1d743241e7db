/*
 * bindcmd: a one-shot listener for BIND. RFC 1928 §4: DST.ADDR names the
 * host the client expects to connect; a connection from any other address is
 * refused (closed) and the listener keeps waiting for the right one.
 */
#include "bindcmd.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "net.h"

struct bindcmd {
	struct loop *loop;
	int fd;
	struct watcher w;
	struct release rel;
	bool has_expect;
	bool delivered;            /* the callback ran: accept no more */
	bool stopped;              /* bindcmd_stop ran: freed after the batch */
	union sockaddr_any expect; /* IP the peer must have (port ignored) */
	bindcmd_cb cb;
	void *arg;
};

/* Refusals are logged at most this often per second: whoever finds the
 * port could otherwise fill the log. */
#define BINDCMD_REFUSAL_LOGS_PER_SEC 5

static void
bindcmd_log_refused(const struct bindcmd *b, const union sockaddr_any *peer)
{
	static struct log_ratelimit rl;
	char a[ADDR_STRLEN];

	if (log_ratelimit_ok(&rl, loop_now(b->loop), 1000, BINDCMD_REFUSAL_LOGS_PER_SEC))
		log_info("bind: refused a connection from unexpected %s",
			addr_format(peer, a, sizeof(a)));
}

static void
bindcmd_on_accept(struct loop *loop, unsigned events, void *arg)
{
	struct bindcmd *b = arg;

	while (!b->delivered && !b->stopped) {
		union sockaddr_any peer;
		int fd = net_accept(b->fd, &peer);
		if (fd < 0) {
			if (errno == EAGAIN || errno == ECONNABORTED)
				return;
			b->delivered = true;
			loop_unwatch(b->loop, &b->w);
			b->cb(-1, errno, NULL, b->arg);
			return;
		}
		addr_unmap(&peer);
		if (b->has_expect && !addr_ip_equal(&peer, &b->expect)) {
			bindcmd_log_refused(b, &peer);
			close(fd);
			continue;
		}
		b->delivered = true;
		loop_unwatch(b->loop, &b->w);
		b->cb(fd, 0, &peer, b->arg);
		return;
	}
}

struct bindcmd *
bindcmd_start(struct loop *loop, const union sockaddr_any *addr, uint16_t lo, uint16_t hi,
	const union sockaddr_any *expect, const struct egress *e, union sockaddr_any *bound,
	bindcmd_cb cb, void *arg)
{
	struct bindcmd *b = calloc(1, sizeof(*b));
	int saved;

	if (!b)
		return NULL;
	b->loop = loop;
	b->cb = cb;
	b->arg = arg;
	if (expect) {
		b->has_expect = true;
		b->expect = *expect;
		addr_unmap(&b->expect);
	}
	b->fd = net_listen_tcp_range(addr, 1, lo, hi, e);
	if (b->fd < 0)
		goto fail;
	if (net_local_addr(b->fd, bound) < 0)
		goto fail_fd;
	watcher_init(&b->w, b->fd, bindcmd_on_accept, b);
	if (loop_watch(loop, &b->w, LOOP_READ) < 0)
		goto fail_fd;
	return b;
fail_fd:
	saved = errno;
	close(b->fd);
	errno = saved;
fail:
	free(b); /* keeps errno (POSIX.1-2024; glibc since 2.33) */
	return NULL;
}

void
bindcmd_stop(struct bindcmd *b)
{
	if (!b || b->stopped)
		return;
	b->stopped = true;
	loop_unwatch_closing(b->loop, &b->w);
	close(b->fd);
	b->fd = -1;
	loop_release(b->loop, &b->rel, free, b);
}
