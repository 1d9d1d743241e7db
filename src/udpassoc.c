/*
 * udpassoc: the data path of one UDP ASSOCIATE (RFC 1928 §7). A relay socket
 * faces the client and accepts datagrams only from the client's address;
 * each datagram's header is parsed with proto and its DATA sent on from an
 * outbound socket of the destination's family; whatever comes back to an
 * outbound socket goes to the client with a header naming its source.
 * Domain destinations go through the resolver with a small bounded queue.
 * Nothing here blocks or buffers without bound: a datagram that cannot be
 * sent now is dropped and counted. The TCP control connection (conn) owns
 * the association and decides when it ends; access rules are conn's too.
 */
#include "udpassoc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "resolver.h"

/* Largest header we put in front of a datagram for the client: an IPv6
 * source (RSV RSV FRAG ATYP, 16 address bytes, PORT). */
#define UDPASSOC_HEADROOM (3 + 1 + 16 + 2)
/* Largest UDP payload the kernel can hand us (IPv6 without jumbograms
 * carries up to 65527; IPv4 up to 65507). */
#define UDPASSOC_DGRAM_MAX 65535
/* Datagrams read per readiness event: level-triggered epoll calls again,
 * and a busy association must not starve the others in the meantime. */
#define UDPASSOC_BATCH 64
/* Datagrams waiting for a name lookup, per association. */
#define UDPASSOC_QUEUE_MAX 16
#define UDPASSOC_QUEUE_BYTES ((size_t)256 * 1024)

enum {
	UDPASSOC_OUT4,
	UDPASSOC_OUT6,
	UDPASSOC_NOUT
};

/* One datagram for a domain destination, waiting for its lookup. */
struct udpassoc_pending {
	struct udpassoc_pending *next; /* FIFO, arrival order */
	struct udpassoc *u;
	struct resolver_query *q; /* NULL once answered */
	bool answered;            /* the callback ran */
	bool resolved;            /* ... with an address, in to */
	union sockaddr_any to;    /* destination, port set */
	struct socks_addr dst;    /* DST.ADDR (a name) and DST.PORT */
	size_t len;               /* DATA bytes */
	uint8_t data[];
};

struct udpassoc {
	struct loop *loop;
	struct resolver *resolver;
	udpassoc_end_cb end;
	void *arg;

	struct watcher relay_w;                /* relay socket, faces the client */
	struct watcher out_w[UDPASSOC_NOUT];   /* outbound sockets, fd -1 until first use */
	union sockaddr_any ext[UDPASSOC_NOUT]; /* outbound source; AF_UNSPEC = wildcard */
	struct egress egress;                  /* outbound sockets' settings */
	union sockaddr_any bnd;                /* relay socket's address (announced) */

	union sockaddr_any client;    /* client's IP (unmapped); port valid once pinned */
	bool port_pinned;             /* client's UDP port known (request or first datagram) */
	bool addr_mismatch;           /* request named another IP: nothing matches */
	union sockaddr_any client_ep; /* client endpoint as recvfrom saw it (for sendto) */
	bool have_ep;                 /* client_ep is valid */

	bool (*allow)(const union sockaddr_any *dst, const char *name, void *arg);
	void *allow_arg; /* access check per datagram (NULL: none) */

	struct timer idle_timer;
	unsigned idle_ms;        /* 0: no idle timeout */
	uint64_t last_active_ms; /* loop_now of the client's last datagram */

	struct udpassoc_pending *qhead; /* domain datagrams awaiting lookups */
	size_t qcount, qbytes;

	struct udpassoc_stats stats;
	const char *end_reason; /* why it ended by itself, for the debug line */
	struct release release;
	bool stopped; /* udpassoc_stop ran: no I/O; freed after the batch */
};

const char *const udpassoc_drop_names[UDPASSOC_DROP_REASONS] = {
	[UDPASSOC_DROP_FRAG] = "fragment",
	[UDPASSOC_DROP_MALFORMED] = "malformed",
	[UDPASSOC_DROP_FOREIGN] = "foreign",
	[UDPASSOC_DROP_BLOCKED] = "would_block",
	[UDPASSOC_DROP_QUEUE] = "queue_full",
	[UDPASSOC_DROP_UNRESOLVED] = "unresolved",
	[UDPASSOC_DROP_ERROR] = "send_error",
	[UDPASSOC_DROP_DENIED] = "denied",
};

/* Shared by every association on the loop's thread: received datagrams are
 * handled (sent on or dropped) before the next receive. The headroom lets a
 * downstream datagram get its header written in front without a copy. */
static uint8_t udpassoc_scratch[UDPASSOC_HEADROOM + UDPASSOC_DGRAM_MAX];

static void
udpassoc_close_watcher(struct loop *loop, struct watcher *w)
{
	if (w->fd < 0)
		return;
	loop_unwatch(loop, w);
	close(w->fd);
	w->fd = -1;
}

/* The totals and every drop counter, at debug. */
static void
udpassoc_log_end(const struct udpassoc *u)
{
	char b[ADDR_STRLEN], drops[UDPASSOC_DROP_REASONS * 32];
	const struct udpassoc_stats *st = &u->stats;
	size_t off = 0;

	for (int i = 0; i < UDPASSOC_DROP_REASONS; i++) {
		int n = snprintf(drops + off, sizeof(drops) - off, " drop_%s=%" PRIu64,
			udpassoc_drop_names[i], st->dropped[i]);
		if (n < 0 || (size_t)n >= sizeof(drops) - off)
			break;
		off += (size_t)n;
	}
	log_debug("udp assoc bnd=%s end=\"%s\" up=%" PRIu64 "/%" PRIu64 " down=%" PRIu64 "/%" PRIu64
		  "%s",
		addr_format(&u->bnd, b, sizeof(b)), u->end_reason ? u->end_reason : "stopped",
		st->dgrams_up, st->bytes_up, st->dgrams_down, st->bytes_down, drops);
}

/* The association ends by itself: it stops, then tells the owner. Callers
 * return at once (the memory lasts until the end of the batch). */
static void
udpassoc_finish(struct udpassoc *u, const char *why)
{
	u->end_reason = why;
	udpassoc_stop(u);
	u->end(why, u->arg);
}

/* Errors a UDP socket may report for an earlier datagram (ICMP): they say
 * nothing about the socket itself, so reading goes on. */
static bool
udpassoc_transient(int err)
{
	switch (err) {
	case EINTR:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
	case EMSGSIZE:
	case ENOBUFS:
	case ENOMEM:
		return true;
	default:
		return false;
	}
}

/* Sends one datagram without ever waiting: a full socket buffer drops it
 * (UDP may lose datagrams; queueing here would be unbounded). Returns true
 * when it went out. */
static bool
udpassoc_sendto(struct udpassoc *u, int fd, const uint8_t *p, size_t len,
	const union sockaddr_any *to)
{
	ssize_t n;

	do {
		n = sendto(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, &to->sa, addr_len(to));
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return true;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
		u->stats.dropped[UDPASSOC_DROP_BLOCKED]++;
	} else if (log_enabled(LOG_LVL_DEBUG)) {
		char b[ADDR_STRLEN], t[ADDR_STRLEN];
		int saved = errno;

		log_debug("udp assoc bnd=%s: sendto %s (%zu bytes): %s",
			addr_format(&u->bnd, b, sizeof(b)), addr_format(to, t, sizeof(t)), len,
			strerror(saved));
	}
	return false;
}

static void udpassoc_on_out4(struct loop *loop, unsigned events, void *arg);
static void udpassoc_on_out6(struct loop *loop, unsigned events, void *arg);

/* Opens the outbound socket of one family on first use: an unconnected
 * socket reaches every destination of that family, so an IPv4 client can
 * reach IPv6 destinations and the other way round. */
static int
udpassoc_open_out(struct udpassoc *u, int which)
{
	union sockaddr_any a;
	int fd, saved;

	if (u->ext[which].sa.sa_family != AF_UNSPEC) {
		a = u->ext[which];
	} else {
		memset(&a, 0, sizeof(a));
		a.sa.sa_family = which == UDPASSOC_OUT6 ? AF_INET6 : AF_INET;
	}
	fd = net_udp_socket_egress(&a, &u->egress);
	if (fd < 0)
		return -1;
	watcher_init(&u->out_w[which], fd,
		which == UDPASSOC_OUT6 ? udpassoc_on_out6 : udpassoc_on_out4, u);
	if (loop_watch(u->loop, &u->out_w[which], LOOP_READ) < 0) {
		saved = errno;
		close(fd);
		u->out_w[which].fd = -1;
		errno = saved;
		return -1;
	}
	return 0;
}

/* DATA to an IP destination (unmapped, port set). */
static void
udpassoc_send_out(struct udpassoc *u, const union sockaddr_any *to, const char *name,
	const uint8_t *p, size_t len)
{
	int which = to->sa.sa_family == AF_INET6 ? UDPASSOC_OUT6 : UDPASSOC_OUT4;

	/* Rules are checked per datagram against the address it really goes
	 * to, so a name resolving into a denied network is refused too. */
	if (u->allow && !u->allow(to, name, u->allow_arg)) {
		u->stats.dropped[UDPASSOC_DROP_DENIED]++;
		return;
	}
	if (u->out_w[which].fd < 0 && udpassoc_open_out(u, which) < 0) {
		u->stats.dropped[UDPASSOC_DROP_ERROR]++;
		char b[ADDR_STRLEN];

		log_warn("udp assoc bnd=%s: outbound %s socket", addr_format(&u->bnd, b, sizeof(b)),
			which == UDPASSOC_OUT6 ? "IPv6" : "IPv4");
		return;
	}
	if (udpassoc_sendto(u, u->out_w[which].fd, p, len, to)) {
		u->stats.dgrams_up++;
		u->stats.bytes_up += len;
	} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
		u->stats.dropped[UDPASSOC_DROP_ERROR]++;
	}
}

/* Another datagram for the same name still waits for its answer: sending
 * this one first would reorder the flow. */
static bool
udpassoc_name_blocked(const struct udpassoc *u, const struct udpassoc_pending *e)
{
	for (const struct udpassoc_pending *x = u->qhead; x != e; x = x->next)
		if (!x->answered && strcasecmp(x->dst.name, e->dst.name) == 0)
			return true;
	return false;
}

/* Sends (or drops) every answered datagram that nothing earlier for the
 * same name holds back. Lookups of different names do not wait for each
 * other; datagrams to one name leave in arrival order even if the resolver
 * answers out of order. The queue is at most UDPASSOC_QUEUE_MAX long. */
static void
udpassoc_flush(struct udpassoc *u)
{
	struct udpassoc_pending **pp = &u->qhead, *e;

	while ((e = *pp) != NULL) {
		if (!e->answered || udpassoc_name_blocked(u, e)) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		u->qcount--;
		u->qbytes -= e->len;
		if (e->resolved)
			udpassoc_send_out(u, &e->to, e->dst.name, e->data, e->len);
		else
			u->stats.dropped[UDPASSOC_DROP_UNRESOLVED]++;
		free(e);
	}
}

static void
udpassoc_on_resolved(const struct resolver_result *res, void *arg)
{
	struct udpassoc_pending *e = arg;
	struct udpassoc *u = e->u;

	e->q = NULL;
	e->answered = true;
	if (res->status == RESOLVER_OK && res->naddrs > 0) {
		/* The first address is the resolver's preferred family. */
		e->to = res->addrs[0];
		addr_unmap(&e->to);
		addr_set_port(&e->to, e->dst.port);
		e->resolved = true;
	} else if (log_enabled(LOG_LVL_DEBUG)) {
		char b[ADDR_STRLEN], d[PROTO_UDP_HEADER_MAX * 4];

		/* proto_addr_format escapes the peer-chosen name for the log. */
		proto_addr_format(&e->dst, d, sizeof(d));
		log_debug("udp assoc bnd=%s: %s: %s", addr_format(&u->bnd, b, sizeof(b)), d,
			resolver_status_str(res->status));
	}
	udpassoc_flush(u);
}

/* A datagram for a domain destination waits for its lookup in a queue
 * bounded by count and bytes; beyond that it is dropped like any datagram
 * the relay cannot take now. */
static void
udpassoc_enqueue(struct udpassoc *u, const struct socks_addr *dst, const uint8_t *p, size_t len)
{
	struct udpassoc_pending *e, **tail;

	if (u->qcount >= UDPASSOC_QUEUE_MAX || u->qbytes + len > UDPASSOC_QUEUE_BYTES) {
		u->stats.dropped[UDPASSOC_DROP_QUEUE]++;
		return;
	}
	if (!u->resolver) {
		u->stats.dropped[UDPASSOC_DROP_UNRESOLVED]++;
		return;
	}
	e = malloc(sizeof(*e) + len);
	if (!e) {
		u->stats.dropped[UDPASSOC_DROP_QUEUE]++;
		return;
	}
	memset(e, 0, sizeof(*e));
	e->u = u;
	/* proto NUL-terminates the name: it can go to the resolver as is. */
	e->dst = *dst;
	e->len = len;
	memcpy(e->data, p, len);
	e->q = resolver_start(u->resolver, e->dst.name, udpassoc_on_resolved, e);
	if (!e->q) {
		free(e);
		u->stats.dropped[UDPASSOC_DROP_UNRESOLVED]++;
		return;
	}
	for (tail = &u->qhead; *tail; tail = &(*tail)->next)
		;
	*tail = e;
	u->qcount++;
	u->qbytes += len;
}

/* Whether a datagram from src (unmapped) is the client's. */
static bool
udpassoc_from_client(const struct udpassoc *u, const union sockaddr_any *src)
{
	if (u->addr_mismatch || !addr_ip_equal(src, &u->client))
		return false;
	return !u->port_pinned || addr_port(src) == addr_port(&u->client);
}

/* One datagram arrived on the relay socket: RFC 1928 §7 header, then DATA
 * to DST.ADDR:DST.PORT. */
static void
udpassoc_up(struct udpassoc *u, const union sockaddr_any *from, const uint8_t *p, size_t len)
{
	struct proto_udp_header h;
	union sockaddr_any src = *from, to;
	socklen_t tolen;
	const uint8_t *data;
	size_t dlen;

	addr_unmap(&src);
	if (!udpassoc_from_client(u, &src)) {
		u->stats.dropped[UDPASSOC_DROP_FOREIGN]++;
		return;
	}
	if (proto_parse_udp_header(p, len, &h) != PROTO_OK || h.dst.port == 0) {
		u->stats.dropped[UDPASSOC_DROP_MALFORMED]++;
		return;
	}
	/* RFC 1928 §7: an implementation that does not support fragmentation
	 * MUST drop any datagram whose FRAG field is other than X'00'. */
	if (h.frag != 0) {
		u->stats.dropped[UDPASSOC_DROP_FRAG]++;
		return;
	}
	if (!u->port_pinned) {
		/* The first well-formed datagram from the client's IP fixes its
		 * port (the request said 0: it did not know it yet); garbage
		 * from another socket on that host cannot take the slot. */
		addr_set_port(&u->client, addr_port(&src));
		u->port_pinned = true;
		if (log_enabled(LOG_LVL_DEBUG)) {
			char b[ADDR_STRLEN], c[ADDR_STRLEN];
			log_debug("udp assoc bnd=%s client=%s pinned",
				addr_format(&u->bnd, b, sizeof(b)),
				addr_format(&src, c, sizeof(c)));
		}
	}
	if (!u->have_ep) {
		u->client_ep = *from;
		u->have_ep = true;
	}
	u->last_active_ms = loop_now(u->loop);
	data = p + h.header_len;
	dlen = len - h.header_len;
	if (h.dst.atyp == SOCKS_ATYP_DOMAIN) {
		udpassoc_enqueue(u, &h.dst, data, dlen);
		return;
	}
	if (proto_addr_to_sockaddr(&h.dst, &to.ss, &tolen) < 0) {
		u->stats.dropped[UDPASSOC_DROP_MALFORMED]++;
		return;
	}
	addr_unmap(&to);
	udpassoc_send_out(u, &to, NULL, data, dlen);
}

/* udpassoc_recv: nothing more to read now (drained, or the association
 * ended on a socket error); or a transient error, go on. */
#define UDPASSOC_RECV_STOP (-1)
#define UDPASSOC_RECV_AGAIN (-2)

/* One datagram from fd into the scratch payload area, with its source:
 * its length (as sent: over UDPASSOC_DGRAM_MAX means truncated), or
 * UDPASSOC_RECV_STOP / UDPASSOC_RECV_AGAIN. On a socket error the
 * association ends: what names the socket in the log, why the end. */
static ssize_t
udpassoc_recv(struct udpassoc *u, int fd, union sockaddr_any *from, const char *what,
	const char *why)
{
	socklen_t flen = sizeof(*from);
	ssize_t n;

	memset(from, 0, sizeof(*from));
	n = recvfrom(fd, udpassoc_scratch + UDPASSOC_HEADROOM, UDPASSOC_DGRAM_MAX, MSG_TRUNC,
		&from->sa, &flen);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return UDPASSOC_RECV_STOP;
	if (udpassoc_transient(errno))
		return UDPASSOC_RECV_AGAIN;
	log_warn("udp assoc %s socket", what);
	udpassoc_finish(u, why);
	return UDPASSOC_RECV_STOP;
}

static void
udpassoc_on_relay(struct loop *loop, unsigned events, void *arg)
{
	struct udpassoc *u = arg;

	/* u->stopped: stopped earlier in this batch (memory still valid until
	 * the release list runs), or ended by the datagram just handled. */
	for (int i = 0; i < UDPASSOC_BATCH && !u->stopped; i++) {
		union sockaddr_any from;
		ssize_t n = udpassoc_recv(u, u->relay_w.fd, &from, "relay",
			"udp relay socket error");

		if (n == UDPASSOC_RECV_STOP)
			return;
		if (n == UDPASSOC_RECV_AGAIN)
			continue;
		if ((size_t)n > UDPASSOC_DGRAM_MAX) {
			u->stats.dropped[UDPASSOC_DROP_MALFORMED]++;
			continue;
		}
		udpassoc_up(u, &from, udpassoc_scratch + UDPASSOC_HEADROOM, (size_t)n);
	}
}

/* Datagrams from any source to an outbound socket go back to the client,
 * each behind a header naming that source (RFC 1928 §7). */
static void
udpassoc_on_out(struct udpassoc *u, int which)
{
	uint8_t *p = udpassoc_scratch + UDPASSOC_HEADROOM;

	for (int i = 0; i < UDPASSOC_BATCH && !u->stopped; i++) {
		uint8_t hdr[PROTO_UDP_HEADER_MAX];
		union sockaddr_any from;
		size_t hlen;
		ssize_t n = udpassoc_recv(u, u->out_w[which].fd, &from, "outbound",
			"udp outbound socket error");

		if (n == UDPASSOC_RECV_STOP)
			return;
		if (n == UDPASSOC_RECV_AGAIN)
			continue;
		/* Nobody to deliver to yet, or a datagram we could not hold. */
		if (!u->have_ep || (size_t)n > UDPASSOC_DGRAM_MAX)
			continue;
		addr_unmap(&from);
		hlen = proto_encode_udp_header(hdr, &from.sa);
		memcpy(p - hlen, hdr, hlen);
		if (udpassoc_sendto(u, u->relay_w.fd, p - hlen, hlen + (size_t)n, &u->client_ep)) {
			/* Not activity: anyone on the Internet can send here,
			 * and only the client's own datagrams keep the
			 * association (and its TCP connection) alive. */
			u->stats.dgrams_down++;
			u->stats.bytes_down += (uint64_t)n;
		}
	}
}

static void
udpassoc_on_out4(struct loop *loop, unsigned events, void *arg)
{
	struct udpassoc *u = arg;

	if (!u->stopped)
		udpassoc_on_out(u, UDPASSOC_OUT4);
}

static void
udpassoc_on_out6(struct loop *loop, unsigned events, void *arg)
{
	struct udpassoc *u = arg;

	if (!u->stopped)
		udpassoc_on_out(u, UDPASSOC_OUT6);
}

static void
udpassoc_on_idle(struct loop *loop, void *arg)
{
	struct udpassoc *u = arg;

	if (timer_idle_expired(loop, &u->idle_timer, u->last_active_ms, u->idle_ms))
		udpassoc_finish(u, "udp idle timeout");
}

/* RFC 1928 §7: DST.ADDR/DST.PORT of the request are where the client will
 * send from. A port pins the client's port at once. An address must be the
 * control connection's own peer (a client cannot hand its association to
 * another host); any other address leaves nothing that can match. A domain
 * name there cannot be checked without a lookup and is ignored. */
static void
udpassoc_apply_request(struct udpassoc *u, const struct socks_addr *req)
{
	union sockaddr_any ra;
	socklen_t ralen;

	if (!req)
		return;
	if (req->port != 0) {
		addr_set_port(&u->client, req->port);
		u->port_pinned = true;
	}
	if ((req->atyp != SOCKS_ATYP_IPV4 && req->atyp != SOCKS_ATYP_IPV6) ||
		proto_addr_is_unspecified(req))
		return;
	if (proto_addr_to_sockaddr(req, &ra.ss, &ralen) < 0)
		return;
	addr_unmap(&ra);
	if (!addr_ip_equal(&ra, &u->client))
		u->addr_mismatch = true;
}

/* The outbound sources; one of the wrong family cannot be used for that
 * family and leaves it to the kernel's choice. */
static void
udpassoc_set_external(struct udpassoc *u, const struct udpassoc_options *opt)
{
	if (opt->external4) {
		u->ext[UDPASSOC_OUT4] = *opt->external4;
		addr_unmap(&u->ext[UDPASSOC_OUT4]);
	}
	if (opt->external6)
		u->ext[UDPASSOC_OUT6] = *opt->external6;
	if (opt->egress)
		u->egress = *opt->egress;
	else
		egress_init(&u->egress);
	if (u->ext[UDPASSOC_OUT4].sa.sa_family != AF_INET)
		u->ext[UDPASSOC_OUT4].sa.sa_family = AF_UNSPEC;
	if (u->ext[UDPASSOC_OUT6].sa.sa_family != AF_INET6)
		u->ext[UDPASSOC_OUT6].sa.sa_family = AF_UNSPEC;
}

static void
udpassoc_log_start(const struct udpassoc *u)
{
	char b[ADDR_STRLEN], c[ADDR_STRLEN];

	log_debug("udp assoc bnd=%s client=%s%s%s", addr_format(&u->bnd, b, sizeof(b)),
		u->port_pinned ? addr_format(&u->client, c, sizeof(c))
			       : addr_ip_format(&u->client, c, sizeof(c)),
		u->port_pinned ? "" : " port=first",
		u->addr_mismatch ? " (request names another address: nothing will match)" : "");
}

static void
udpassoc_free(void *arg)
{
	free(arg);
}

struct udpassoc *
udpassoc_start(struct loop *loop, struct resolver *resolver, const struct udpassoc_options *opt,
	const union sockaddr_any *client_ip, const union sockaddr_any *tcp_local,
	const struct socks_addr *req, union sockaddr_any *bnd, udpassoc_end_cb end, void *arg)
{
	static const struct udpassoc_options no_opt;
	union sockaddr_any local = *tcp_local;
	struct udpassoc *u;
	int fd = -1, saved;

	if (!opt)
		opt = &no_opt;
	/* The relay lives on the IP the client reached us on, in its plain
	 * family: a v4-mapped control connection gets an IPv4 relay. */
	addr_unmap(&local);
	if (local.sa.sa_family != AF_INET && local.sa.sa_family != AF_INET6) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	/* BND.ADDR must be an address the client can send to (never the
	 * wildcard), and an accepted socket's local address always is. */
	if (addr_is_unspecified(&local)) {
		errno = EADDRNOTAVAIL;
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->loop = loop;
	u->resolver = resolver;
	u->end = end;
	u->arg = arg;
	u->idle_ms = opt->idle_ms;
	u->allow = opt->allow;
	u->allow_arg = opt->allow_arg;
	u->last_active_ms = loop_now(loop);
	watcher_init(&u->relay_w, -1, udpassoc_on_relay, u);
	for (int i = 0; i < UDPASSOC_NOUT; i++)
		watcher_init(&u->out_w[i], -1, NULL, u);
	timer_init(&u->idle_timer, udpassoc_on_idle, u);
	udpassoc_set_external(u, opt);
	u->client = *client_ip;
	addr_unmap(&u->client);
	addr_set_port(&u->client, 0);
	udpassoc_apply_request(u, req);

	fd = net_udp_socket(&local, opt->port_lo, opt->port_hi);
	if (fd < 0)
		goto fail;
	if (net_local_addr(fd, &u->bnd) < 0)
		goto fail;
	watcher_init(&u->relay_w, fd, udpassoc_on_relay, u);
	if (loop_watch(loop, &u->relay_w, LOOP_READ) < 0)
		goto fail;
	if (u->idle_ms)
		timer_start(loop, &u->idle_timer, u->idle_ms);
	*bnd = u->bnd;
	if (log_enabled(LOG_LVL_DEBUG))
		udpassoc_log_start(u);
	return u;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	free(u);
	errno = saved;
	return NULL;
}

void
udpassoc_stop(struct udpassoc *u)
{
	struct udpassoc_pending *e;

	if (!u || u->stopped)
		return;
	u->stopped = true;
	timer_stop(u->loop, &u->idle_timer);
	udpassoc_close_watcher(u->loop, &u->relay_w);
	for (int i = 0; i < UDPASSOC_NOUT; i++)
		udpassoc_close_watcher(u->loop, &u->out_w[i]);
	while ((e = u->qhead) != NULL) {
		u->qhead = e->next;
		if (e->q)
			resolver_cancel(e->q);
		free(e);
	}
	u->qcount = 0;
	u->qbytes = 0;
	if (log_enabled(LOG_LVL_DEBUG))
		udpassoc_log_end(u);
	/* An event for one of our sockets may still wait in this batch; the
	 * memory outlives it (the loop skips unregistered watchers). */
	loop_release(u->loop, &u->release, udpassoc_free, u);
}

const struct udpassoc_stats *
udpassoc_get_stats(const struct udpassoc *u)
{
	return &u->stats;
}
