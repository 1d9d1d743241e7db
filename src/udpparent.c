/*
 * udpparent: one UDP association with a SOCKS5 parent, for one client
 * association. Opening it: the parent's name (resolver), its TCP connect
 * (dial), then the handshake (upstream, with parent's socket I/O) asking
 * UDP ASSOCIATE from a UDP socket of ours on the control connection's
 * local address; the reply names the parent's relay, which the socket is
 * connected to. All of it within one deadline; a failure counts against
 * the parent (and may mark it down). Afterwards the control connection is
 * only watched for its end, which ends the association.
 */
#include "udpparent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dial.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "parent.h"
#include "resolver.h"
#include "upstream.h"

/* Datagrams that may wait for the parent's answer. */
#define UDPPARENT_QUEUE_MAX 16
#define UDPPARENT_QUEUE_BYTES ((size_t)256 * 1024)
/* Datagrams read from the parent's relay per readiness event. */
#define UDPPARENT_BATCH 32
#define UDPPARENT_DGRAM_MAX 65536

enum udpparent_state {
	UDPPARENT_LOOKUP,     /* the parent's name is being looked up */
	UDPPARENT_CONNECTING, /* the TCP connect to the parent runs */
	UDPPARENT_HANDSHAKE,  /* greeting, password, UDP ASSOCIATE */
	UDPPARENT_READY,      /* the parent's relay takes datagrams */
	UDPPARENT_FAILED,     /* ended: sends nothing */
};

/* A datagram waiting for the parent, header included. */
struct udpparent_dgram {
	struct udpparent_dgram *next;
	size_t len;
	uint8_t p[];
};

struct udpparent {
	struct udpparent_options o;
	const struct upstream *u;
	struct parent_state *st;
	enum udpparent_state state;
	struct resolver_query *query;
	struct resolver_result res;
	struct dial dial;
	struct watcher tcp; /* the control connection (the dial's until connected) */
	struct watcher udp; /* connected to the parent's relay */
	struct timer timer; /* the opening's deadline */
	struct timer kick;  /* runs the first step from the loop */
	uint64_t deadline_ms;
	struct udpparent_dgram *qhead, **qtail;
	size_t qcount, qbytes;
	struct release rel;
	bool stopped;
	struct upstream_hs hs;
};

static void udpparent_on_tcp(struct loop *loop, unsigned events, void *arg);

static void
udpparent_close(struct udpparent *p, struct watcher *w)
{
	if (w->fd < 0)
		return;
	loop_unwatch_closing(p->o.loop, w);
	close(w->fd);
	w->fd = -1;
}

static void
udpparent_drop_queue(struct udpparent *p)
{
	struct udpparent_dgram *d;

	while ((d = p->qhead)) {
		p->qhead = d->next;
		free(d);
	}
	p->qtail = &p->qhead;
	p->qcount = 0;
	p->qbytes = 0;
}

/* The lookup cancelled, the dial stopped, both sockets closed, the timer
 * stopped and the queue dropped (the kick timer is udpparent_stop's). */
static void
udpparent_release_io(struct udpparent *p)
{
	if (p->query)
		resolver_cancel(p->query);
	p->query = NULL;
	dial_stop(&p->dial);
	udpparent_close(p, &p->tcp);
	udpparent_close(p, &p->udp);
	timer_stop(p->o.loop, &p->timer);
	udpparent_drop_queue(p);
}

/* Ends the association: everything closed, queued datagrams dropped. The
 * parent is blamed when the opening failed at it (blame). */
static void
udpparent_fail(struct udpparent *p, const char *why, bool blame)
{
	if (p->state == UDPPARENT_FAILED)
		return;
	if (blame)
		parent_failed(p->st, why, loop_now(p->o.loop), p->o.down_after, p->o.down_for_s);
	log_info("udp via %s: %s", p->u->label, why);
	p->state = UDPPARENT_FAILED;
	udpparent_release_io(p);
}

static void
udpparent_on_timer(struct loop *loop, void *arg)
{
	udpparent_fail(arg, "timeout", true);
}

/* Datagrams from the parent's relay: each must carry a well-formed header
 * (the client gets it as it is), unfragmented. */
static void
udpparent_on_udp(struct loop *loop, unsigned events, void *arg)
{
	static uint8_t buf[UDPPARENT_DGRAM_MAX];
	struct udpparent *p = arg;

	for (int i = 0; i < UDPPARENT_BATCH && !p->stopped && p->state == UDPPARENT_READY; i++) {
		ssize_t n = recv(p->udp.fd, buf, sizeof(buf), MSG_TRUNC);
		struct proto_udp_header h;

		if (n < 0)
			return; /* EAGAIN; an ICMP error is no reason to stop */
		if ((size_t)n > sizeof(buf) ||
			proto_parse_udp_header(buf, (size_t)n, &h) != PROTO_OK || h.frag != 0)
			continue;
		p->o.recv(&h.dst, buf, (size_t)n, h.header_len, p->o.arg);
	}
}

/* Sends header and data as one datagram to the parent's relay. */
static bool
udpparent_emit(struct udpparent *p, const uint8_t *hdr, size_t hlen, const uint8_t *data,
	size_t len)
{
	struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)data, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

	return sendmsg(p->udp.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

/* The parent's relay from its reply: BND, or the parent's own address with
 * BND's port when BND is unspecified (as many servers answer). */
static int
udpparent_relay_addr(struct udpparent *p, union sockaddr_any *to)
{
	const struct socks_addr *b = &p->hs.res.bnd;
	socklen_t len = sizeof(*to);
	union sockaddr_any peer;

	if (b->atyp == SOCKS_ATYP_DOMAIN || proto_addr_to_sockaddr(b, &to->ss, &len) < 0)
		return -1;
	if (addr_is_unspecified(to)) {
		len = sizeof(peer);
		if (getpeername(p->tcp.fd, &peer.sa, &len) < 0)
			return -1;
		addr_set_port(&peer, b->port);
		*to = peer;
	}
	addr_unmap(to);
	return 0;
}

/* The parent answered UDP ASSOCIATE: the socket goes to its relay and the
 * datagrams that waited go out, in order. */
static void
udpparent_ready(struct udpparent *p)
{
	union sockaddr_any relay;
	struct udpparent_dgram *d;

	parent_answered(p->st);
	if (p->hs.res.rep != SOCKS_REP_SUCCEEDED) {
		udpparent_fail(p, p->hs.res.why, false);
		return;
	}
	if (udpparent_relay_addr(p, &relay) < 0 ||
		connect(p->udp.fd, &relay.sa, addr_len(&relay)) < 0 ||
		loop_watch(p->o.loop, &p->udp, LOOP_READ) < 0 ||
		loop_watch(p->o.loop, &p->tcp, LOOP_READ) < 0) {
		udpparent_fail(p, "the parent's relay address is unusable", false);
		return;
	}
	p->state = UDPPARENT_READY;
	timer_stop(p->o.loop, &p->timer);
	while ((d = p->qhead)) {
		p->qhead = d->next;
		(void)udpparent_emit(p, d->p, d->len, NULL, 0);
		free(d);
	}
	udpparent_drop_queue(p);
}

static void
udpparent_exchange(struct udpparent *p)
{
	if (parent_hs_send(&p->hs, p->tcp.fd) < 0) {
		udpparent_fail(p, strerror(errno), true);
		return;
	}
	if (loop_watch(p->o.loop, &p->tcp, LOOP_READ | (p->hs.out_len ? LOOP_WRITE : 0)) < 0)
		udpparent_fail(p, "epoll", false);
}

static void
udpparent_on_tcp(struct loop *loop, unsigned events, void *arg)
{
	struct udpparent *p = arg;
	uint8_t sink[512];

	if (p->stopped || p->state == UDPPARENT_FAILED)
		return;
	if (p->state == UDPPARENT_READY) {
		/* The association lasts as long as this connection. */
		ssize_t n = read(p->tcp.fd, sink, sizeof(sink));

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			udpparent_fail(p, "the parent closed the association", false);
		return;
	}
	if (events & LOOP_WRITE)
		udpparent_exchange(p);
	if (!(events & LOOP_READ) || p->state == UDPPARENT_FAILED)
		return;
	switch (parent_hs_recv(&p->hs, p->tcp.fd)) {
	case UPSTREAM_FEED_MORE:
		return;
	case UPSTREAM_FEED_STEP:
		udpparent_exchange(p);
		return;
	case UPSTREAM_FEED_DONE:
		udpparent_ready(p);
		return;
	case UPSTREAM_FEED_FAILED:
		udpparent_fail(p, p->hs.res.why, p->hs.res.parent_failed);
		return;
	}
}

/* Connected: a UDP socket on the control connection's local address names
 * where our datagrams come from, and the handshake asks for UDP ASSOCIATE. */
static void
udpparent_connected(struct udpparent *p)
{
	union sockaddr_any local;
	struct socks_addr from;
	int fd;

	watcher_set_callback(&p->tcp, udpparent_on_tcp, p);
	if (net_local_addr(p->tcp.fd, &local) < 0) {
		udpparent_fail(p, strerror(errno), false);
		return;
	}
	addr_set_port(&local, 0);
	if ((fd = net_udp_socket_egress(&local, &p->o.egress)) < 0) {
		udpparent_fail(p, "no UDP socket", false);
		return;
	}
	watcher_init(&p->udp, fd, udpparent_on_udp, p);
	if (net_local_addr(fd, &local) < 0) {
		udpparent_fail(p, "no UDP socket", false);
		return;
	}
	proto_addr_from_sockaddr(&from, &local.sa);
	if (upstream_hs_start(&p->hs, p->u, SOCKS_CMD_UDP_ASSOCIATE, &from) < 0) {
		udpparent_fail(p, p->hs.res.why, false);
		return;
	}
	p->state = UDPPARENT_HANDSHAKE;
	udpparent_exchange(p);
}

static void
udpparent_on_dialed(enum dial_result r, int err, const union sockaddr_any *bnd, void *arg)
{
	struct udpparent *p = arg;

	if (p->stopped)
		return;
	if (r != DIAL_CONNECTED) {
		udpparent_fail(p, strerror(err), true);
		return;
	}
	udpparent_connected(p);
}

/* The session's source and settings for the parent's address. dial's
 * route hook. */
static bool
udpparent_route(const union sockaddr_any *to, struct dial_route *route, void *arg)
{
	const struct udpparent *p = arg;

	route->from = to->sa.sa_family == AF_INET6 ? p->o.from6 : p->o.from4;
	route->egress = p->o.egress;
	return true;
}

static void
udpparent_dial(struct udpparent *p)
{
	struct dial_options opt = { .route = udpparent_route, .route_arg = p };

	p->state = UDPPARENT_CONNECTING;
	if (dial_start(&p->dial, p->o.loop, &p->tcp, p->res.addrs, p->res.naddrs, p->u->port,
		    p->deadline_ms, &opt, udpparent_on_dialed, p) != DIAL_PENDING)
		udpparent_fail(p, strerror(p->dial.last_err), true);
}

static void
udpparent_on_resolved(const struct resolver_result *res, void *arg)
{
	struct udpparent *p = arg;

	p->query = NULL;
	if (res->status != RESOLVER_OK || res->naddrs == 0) {
		udpparent_fail(p, resolver_status_str(res->status), true);
		return;
	}
	p->res = *res;
	udpparent_dial(p);
}

/* Runs the first step after udpparent_start returned (a failure must not
 * reach the caller from inside the start). */
static void
udpparent_on_start(struct loop *loop, void *arg)
{
	struct udpparent *p = arg;

	timer_start(loop, &p->timer, p->deadline_ms - loop_now(loop));
	if (addr_parse(p->u->host, p->u->port, &p->res.addrs[0]) == 0) {
		p->res.naddrs = 1;
		udpparent_dial(p);
		return;
	}
	p->state = UDPPARENT_LOOKUP;
	if (!(p->query = resolver_start(p->o.resolver, p->u->host, udpparent_on_resolved, p)))
		udpparent_fail(p, "no memory for lookup", false);
}

struct udpparent *
udpparent_start(const struct udpparent_options *opt, const struct upstream *u)
{
	struct udpparent *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->o = *opt;
	p->u = u;
	if (!(p->st = parents_get(opt->parents, u))) {
		free(p);
		return NULL;
	}
	p->qtail = &p->qhead;
	p->dial.stopped = true;
	watcher_init(&p->tcp, -1, NULL, p);
	watcher_init(&p->udp, -1, NULL, p);
	p->deadline_ms = loop_now(opt->loop) + opt->timeout_ms;
	p->state = UDPPARENT_LOOKUP;
	timer_init(&p->timer, udpparent_on_timer, p);
	timer_init(&p->kick, udpparent_on_start, p);
	timer_start(opt->loop, &p->kick, 0);
	return p;
}

bool
udpparent_send(struct udpparent *p, const struct socks_addr *dst, const uint8_t *data, size_t len)
{
	uint8_t hdr[PROTO_UDP_HEADER_MAX] = { 0, 0, 0 };
	size_t hlen = proto_encode_addr(hdr + 3, sizeof(hdr) - 3, dst);
	struct udpparent_dgram *d;

	if (hlen == 0 || p->state == UDPPARENT_FAILED)
		return false;
	hlen += 3;
	if (p->state == UDPPARENT_READY)
		return udpparent_emit(p, hdr, hlen, data, len);
	if (p->qcount >= UDPPARENT_QUEUE_MAX || p->qbytes + len > UDPPARENT_QUEUE_BYTES ||
		!(d = malloc(sizeof(*d) + hlen + len)))
		return false;
	d->next = NULL;
	d->len = hlen + len;
	memcpy(d->p, hdr, hlen);
	memcpy(d->p + hlen, data, len);
	*p->qtail = d;
	p->qtail = &d->next;
	p->qcount++;
	p->qbytes += len;
	return true;
}

bool
udpparent_failed(const struct udpparent *p)
{
	return p->state == UDPPARENT_FAILED;
}

const struct upstream *
udpparent_upstream(const struct udpparent *p)
{
	return p->u;
}

static void
udpparent_free(void *arg)
{
	free(arg);
}

void
udpparent_stop(struct udpparent *p)
{
	if (!p || p->stopped)
		return;
	p->stopped = true;
	udpparent_release_io(p);
	timer_stop(p->o.loop, &p->kick);
	loop_release(p->o.loop, &p->rel, udpparent_free, p);
}
