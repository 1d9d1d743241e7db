/*
 * udpassoc: the data path of one UDP ASSOCIATE (RFC 1928 §7). A relay socket
 * faces the client and accepts datagrams only from the client's address;
 * each datagram's header is parsed with proto and its DATA sent on from an
 * outbound socket of the destination's family; whatever comes back to an
 * outbound socket goes to the client with a header naming its source.
 * Domain destinations go through the resolver with a small bounded queue.
 * Datagrams move in batches: one recvmmsg per readiness event into a
 * per-loop arena, headers parsed and written in place, then one sendmmsg
 * per destination socket, runs of equal datagrams to one destination as
 * single UDP_SEGMENT sends. Nothing here blocks or buffers without bound:
 * a datagram that cannot be sent now is dropped and counted. The TCP
 * control connection (conn) owns the association and decides when it ends;
 * access rules are conn's too.
 */
#include "udpassoc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "egress.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "resolver.h"

/* Datagrams wait in a per-loop arena of UDPASSOC_BATCH slots (see below).
 * A slot's headroom takes the header a datagram for the client gets in
 * front of it (IPv6 source: RSV RSV FRAG ATYP, 16 bytes, PORT = 22; a cache
 * line); its payload part takes any datagram whole: UDP carries at most
 * 65,535 - 8 bytes, so with 65,536 nothing is ever cut. */
#define UDPASSOC_HEADROOM 64
#define UDPASSOC_DGRAM_MAX 65536
/* 65,600: not a multiple of the page size, so the slots' first bytes fall
 * in different cache sets. */
#define UDPASSOC_SLOT (UDPASSOC_HEADROOM + UDPASSOC_DGRAM_MAX)
#define UDPASSOC_PAGE 4096
/* Pages the arena may keep after holding large datagrams: past this many
 * bytes of them, it hands all its pages back to the kernel (one madvise),
 * so that a burst of 64 KiB datagrams does not pin 2 MiB for good. */
#define UDPASSOC_ARENA_KEEP ((size_t)512 * 1024)
/* UDP_SEGMENT (GSO): several datagrams of one size to one destination in one
 * send, cut by the kernel at the segment size; used toward the client only
 * (see udpassoc_send_batch). Segments stay under a 1,500-byte MTU with IPv6
 * headers (a larger one fails where a plain send would fragment); a send
 * holds at most 64 of them (UDP_MAX_SEGMENTS on older kernels) and 64 KiB. */
#define UDPASSOC_GSO_SEG_MAX 1452
#define UDPASSOC_GSO_SEGS 64
#define UDPASSOC_GSO_BYTES 65000
/* Datagrams waiting for a name lookup, per association. */
#define UDPASSOC_QUEUE_MAX 16
#define UDPASSOC_QUEUE_BYTES ((size_t)256 * 1024)

/* The association's sockets, as the send path names them: the outbound
 * sockets (their index is also out_w's) and the relay socket. */
enum {
	UDPASSOC_OUT4,
	UDPASSOC_OUT6,
	UDPASSOC_NOUT,
	UDPASSOC_RELAY = UDPASSOC_NOUT,
	UDPASSOC_NSOCKS
};

/* The last verdict of the allow hook on an address without a name: the
 * rules and everything they read are fixed for the association's life, so
 * the verdict for an address is too, and a flow asks once. */
struct udpassoc_verdict {
	union sockaddr_any addr;
	bool valid, allow;
	const struct upstream *parent;
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
	bool port_from_request;       /* ... from the request's DST.PORT */
	bool port_confirmed;          /* a datagram came from the pinned port */
	bool port_warned;             /* "another port" logged (once) */
	bool behind_nat;              /* the request named another IP than the client's */
	union sockaddr_any client_ep; /* client endpoint as recvfrom saw it (for sendto) */
	bool have_ep;                 /* client_ep is valid */

	bool (*allow)(const union sockaddr_any *dst, const char *name, uint16_t port,
		const struct upstream **parent, void *arg);
	void *allow_arg;               /* access check per datagram (NULL: none) */
	struct udpparent_options popt; /* for associations with parents */
	struct udpparent *parents[UDPASSOC_MAX_PARENTS]; /* opened on demand */
	struct udpassoc_verdict to_v;                    /* last destination asked about */
	struct udpassoc_verdict from_v;                  /* last source of an answer asked about */
	bool gso_off; /* a UDP_SEGMENT send to the client failed: plain sends */
	bool (*meter)(int dir, size_t len, void *arg);
	void *meter_arg; /* rate limits and quotas per datagram (NULL: none) */

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
	[UDPASSOC_DROP_DENIED_IN] = "denied_inbound",
	[UDPASSOC_DROP_PARENT] = "parent",
	[UDPASSOC_DROP_RATE] = "rate_limit",
};

/*
 * The batch arena, shared by every association on the loop's thread: a
 * readiness event reads up to UDPASSOC_BATCH datagrams from one socket with
 * one recvmmsg, each into a slot of its own, and sends them all on (one
 * sendmmsg per destination socket) or drops them before the callback
 * returns, so nothing in here outlives one callback and one arena serves
 * every association.
 *
 * Why slots of 64 KiB: a datagram too long for its buffer is cut and the
 * rest lost (recvmmsg cannot be told to stop at a long one, and a second
 * look is too late), yet datagrams up to 65,507 bytes must arrive whole.
 * The slots cost address space, not memory: the kernel writes only as
 * many bytes as a datagram has, so a small datagram touches one page of its
 * slot, and 32 slots of small datagrams keep about 128 KiB resident. The
 * pages that large datagrams touched are handed back (madvise) once they
 * add up to UDPASSOC_ARENA_KEEP: 2 MiB at the worst moment (a whole batch
 * of 64 KiB datagrams), 512 KiB to 640 KiB after that.
 */
static uint8_t udpassoc_slots[UDPASSOC_BATCH][UDPASSOC_SLOT] __attribute__((aligned(4096)));

/* One datagram to send: bytes p[0..len) (for the client with its header,
 * hdr bytes of them) to *to. */
struct udpassoc_tx {
	const uint8_t *p;
	size_t len, hdr;
	const union sockaddr_any *to;
};

static struct {
	union sockaddr_any from[UDPASSOC_BATCH]; /* sources of the datagrams read */
	union sockaddr_any to[UDPASSOC_BATCH];   /* destinations from their headers */
	struct mmsghdr in[UDPASSOC_BATCH];
	struct iovec in_iov[UDPASSOC_BATCH];
	/* What goes out, per socket, in arrival order. */
	struct udpassoc_tx tx[UDPASSOC_NSOCKS][UDPASSOC_BATCH];
	size_t ntx[UDPASSOC_NSOCKS];
	/* The messages of one send: a message is a datagram, or a run of them
	 * sent with UDP_SEGMENT (first and count index the tx list). */
	struct mmsghdr out[UDPASSOC_BATCH];
	struct iovec out_iov[UDPASSOC_BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} gso[UDPASSOC_BATCH];
	uint8_t first[UDPASSOC_BATCH], count[UDPASSOC_BATCH];
	size_t large_bytes; /* bytes of datagrams past a slot's first page, since
			      the arena's pages were last handed back */
} udpassoc_arena;

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

/* How a send of a message ended, for the drop counters. */
static void
udpassoc_count_sent(struct udpassoc *u, int sock, const struct udpassoc_tx *tx, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (sock == UDPASSOC_RELAY) {
			/* Not activity: anyone on the Internet can send here,
			 * and only the client's own datagrams keep the
			 * association (and its TCP connection) alive. */
			u->stats.dgrams_down++;
			u->stats.bytes_down += tx[i].len - tx[i].hdr;
		} else {
			u->stats.dgrams_up++;
			u->stats.bytes_up += tx[i].len;
		}
	}
}

/* A datagram that could not be sent: a full socket buffer drops it (UDP may
 * lose datagrams; queueing here would be unbounded), anything else counts
 * as a send error (unreachable, too big, refused by a firewall). */
static void
udpassoc_count_failed(struct udpassoc *u, int err, const struct udpassoc_tx *tx, size_t n)
{
	if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
		u->stats.dropped[UDPASSOC_DROP_BLOCKED] += n;
		return;
	}
	u->stats.dropped[UDPASSOC_DROP_ERROR] += n;
	if (n && log_enabled(LOG_LVL_DEBUG)) {
		char b[ADDR_STRLEN], t[ADDR_STRLEN];

		log_debug("udp assoc bnd=%s: send to %s (%zu bytes): %s",
			addr_format(&u->bnd, b, sizeof(b)), addr_format(tx->to, t, sizeof(t)),
			tx->len, strerror(err));
	}
}

/* Sends datagrams one by one (what a UDP_SEGMENT send the kernel refused
 * held). */
static void
udpassoc_send_each(struct udpassoc *u, int sock, int fd, const struct udpassoc_tx *tx, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ssize_t r;

		do {
			r = sendto(fd, tx[i].p, tx[i].len, MSG_DONTWAIT | MSG_NOSIGNAL,
				&tx[i].to->sa, addr_len(tx[i].to));
		} while (r < 0 && errno == EINTR);
		if (r >= 0)
			udpassoc_count_sent(u, sock, &tx[i], 1);
		else
			udpassoc_count_failed(u, errno, &tx[i], 1);
	}
}

/* How many datagrams from tx[0] on go in one UDP_SEGMENT send: the run of
 * datagrams of tx[0]'s length to the same destination, and one shorter one
 * after it (the kernel cuts the bytes at the segment size, so only the last
 * segment may be short). 1: a plain send. */
static size_t
udpassoc_gso_run(const struct udpassoc_tx *tx, size_t n)
{
	size_t seg = tx[0].len, total = seg, k = 1;

	if (seg == 0 || seg > UDPASSOC_GSO_SEG_MAX)
		return 1;
	while (k < n && k < UDPASSOC_GSO_SEGS && tx[k].len > 0 && tx[k].len <= seg &&
		total + tx[k].len <= UDPASSOC_GSO_BYTES &&
		(tx[k].to == tx[0].to || addr_equal(tx[k].to, tx[0].to))) {
		total += tx[k].len;
		if (tx[k++].len < seg)
			break;
	}
	return k;
}

/* Lays tx[0..n) out as the arena's messages (runs of equal datagrams to one
 * destination as UDP_SEGMENT sends unless gso is false). Returns how many. */
static size_t
udpassoc_build_msgs(const struct udpassoc_tx *tx, size_t n, bool gso)
{
	size_t nmsg = 0;

	for (size_t i = 0; i < n;) {
		struct msghdr *h = &udpassoc_arena.out[nmsg].msg_hdr;
		size_t k = gso ? udpassoc_gso_run(tx + i, n - i) : 1;

		memset(h, 0, sizeof(*h));
		h->msg_name = (void *)&tx[i].to->sa;
		h->msg_namelen = addr_len(tx[i].to);
		h->msg_iov = &udpassoc_arena.out_iov[i];
		h->msg_iovlen = k;
		for (size_t j = i; j < i + k; j++) {
			udpassoc_arena.out_iov[j].iov_base = (void *)tx[j].p;
			udpassoc_arena.out_iov[j].iov_len = tx[j].len;
		}
		if (k > 1) {
			struct cmsghdr *cm = &udpassoc_arena.gso[nmsg].align;
			uint16_t seg = (uint16_t)tx[i].len;

			h->msg_control = udpassoc_arena.gso[nmsg].buf;
			h->msg_controllen = sizeof(udpassoc_arena.gso[nmsg].buf);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(seg));
			memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		}
		udpassoc_arena.first[nmsg] = (uint8_t)i;
		udpassoc_arena.count[nmsg] = (uint8_t)k;
		nmsg++;
		i += k;
	}
	return nmsg;
}

/* Errors that say UDP_SEGMENT itself failed, not the destination. */
static bool
udpassoc_gso_refused(int err)
{
	return err == EINVAL || err == EIO || err == EMSGSIZE || err == ENOPROTOOPT ||
		err == EOPNOTSUPP;
}

/*
 * Sends tx[0..n) from socket sock in order, with as few sendmmsg calls as
 * the kernel allows. A partial send (fewer sent than asked) is retried from
 * the first unsent message, which then reports its own error: one that is
 * about that datagram (too big, unreachable, refused) drops and counts it
 * and the rest go on; a full socket buffer (EAGAIN, ENOBUFS) drops and
 * counts the rest of the batch, since trying again at once would fail the
 * same way. A UDP_SEGMENT send the kernel refuses (no GSO, checksum offload
 * or MTU for it) is sent again datagram by datagram, and the association
 * sends plainly from then on.
 *
 * Runs go out as UDP_SEGMENT sends toward the client only (where every
 * datagram has the same destination). Measured on loopback (issue 21),
 * that takes 15-20 % off the proxy's CPU per echoed datagram, one flow or
 * 32; segment sends toward the destinations too took no more off, but
 * with one flow they let the window travel as one burst through every hop
 * (a server answering in batches keeps it so): round trips 30 % longer and
 * 25 % fewer datagrams per second.
 */
static void
udpassoc_send_batch(struct udpassoc *u, int sock, const struct udpassoc_tx *tx, size_t n)
{
	int fd = sock == UDPASSOC_RELAY ? u->relay_w.fd : u->out_w[sock].fd;
	size_t nmsg = udpassoc_build_msgs(tx, n, sock == UDPASSOC_RELAY && !u->gso_off), m = 0;

	while (m < nmsg) {
		const struct udpassoc_tx *t = tx + udpassoc_arena.first[m];
		int r = sendmmsg(fd, udpassoc_arena.out + m, (unsigned)(nmsg - m),
			MSG_DONTWAIT | MSG_NOSIGNAL);
		int err = errno;

		for (int i = 0; i < r; i++, m++)
			udpassoc_count_sent(u, sock, tx + udpassoc_arena.first[m],
				udpassoc_arena.count[m]);
		if (r > 0 || (r < 0 && err == EINTR))
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
			udpassoc_count_failed(u, err, t, (size_t)(tx + n - t));
			return;
		}
		if (udpassoc_arena.count[m] > 1) {
			u->gso_off = udpassoc_gso_refused(err);
			udpassoc_send_each(u, sock, fd, t, udpassoc_arena.count[m]);
		} else {
			udpassoc_count_failed(u, err, t, 1);
		}
		m++;
	}
}

/* Hands the arena's pages back once large datagrams have touched more than
 * UDPASSOC_ARENA_KEEP bytes of them; called before a read, never while a
 * batch is in use. The kernel gives zeroed pages again on the next touch. */
static void
udpassoc_arena_trim(void)
{
	if (udpassoc_arena.large_bytes < UDPASSOC_ARENA_KEEP)
		return;
	/* Only memory use depends on it: a failure leaves the pages in place. */
	(void)madvise(udpassoc_slots, sizeof(udpassoc_slots), MADV_DONTNEED);
	udpassoc_arena.large_bytes = 0;
}

/* The receive headers: a slot per datagram, its source into from[]. */
static void
udpassoc_arena_prepare(void)
{
	for (int i = 0; i < UDPASSOC_BATCH; i++) {
		struct msghdr *h = &udpassoc_arena.in[i].msg_hdr;

		udpassoc_arena.in_iov[i].iov_base = udpassoc_slots[i] + UDPASSOC_HEADROOM;
		udpassoc_arena.in_iov[i].iov_len = UDPASSOC_DGRAM_MAX;
		memset(h, 0, sizeof(*h));
		h->msg_name = &udpassoc_arena.from[i];
		h->msg_namelen = sizeof(udpassoc_arena.from[i]);
		h->msg_iov = &udpassoc_arena.in_iov[i];
		h->msg_iovlen = 1;
	}
}

/* udpassoc_recv_batch: nothing read now (or the association ended). */
#define UDPASSOC_RECV_NONE 0

/*
 * Reads up to UDPASSOC_BATCH datagrams from fd into the arena's slots (one
 * recvmmsg: the bound per readiness event that keeps one busy association
 * from starving the others and the TCP sessions; the level-triggered loop
 * calls again for the rest). Returns how many. On a socket error the
 * association ends (what names the socket in the log, why the end) and
 * UDPASSOC_RECV_NONE is returned; errors a UDP socket reports for an
 * earlier datagram (ICMP) are passed over.
 */
static int
udpassoc_recv_batch(struct udpassoc *u, int fd, const char *what, const char *why)
{
	int n;

	udpassoc_arena_trim();
	for (int tries = 0; tries < 8; tries++) {
		udpassoc_arena_prepare();
		n = recvmmsg(fd, udpassoc_arena.in, UDPASSOC_BATCH, MSG_DONTWAIT, NULL);
		if (n > 0) {
			for (int i = 0; i < n; i++)
				if (udpassoc_arena.in[i].msg_len >
					UDPASSOC_PAGE - UDPASSOC_HEADROOM)
					udpassoc_arena.large_bytes += udpassoc_arena.in[i].msg_len;
			return n;
		}
		if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
			return UDPASSOC_RECV_NONE;
		if (!udpassoc_transient(errno)) {
			log_warn("udp assoc %s socket", what);
			udpassoc_finish(u, why);
			return UDPASSOC_RECV_NONE;
		}
	}
	/* Reported errors of earlier datagrams only: the next event goes on. */
	return UDPASSOC_RECV_NONE;
}

/* Whether the allow hook lets address a (a destination, or an answer's
 * source) through, and through which parent (*parent); without a name the
 * verdict is remembered in *v. */
static bool
udpassoc_allowed(struct udpassoc *u, struct udpassoc_verdict *v, const union sockaddr_any *a,
	const char *name, const struct upstream **parent)
{
	bool ok;

	*parent = NULL;
	if (!u->allow)
		return true;
	if (!name && v->valid && addr_equal(&v->addr, a)) {
		*parent = v->parent;
		return v->allow;
	}
	ok = u->allow(a, name, addr_port(a), parent, u->allow_arg);
	if (!name) {
		v->addr = *a;
		v->valid = true;
		v->allow = ok;
		v->parent = *parent;
	}
	return ok;
}

/* --- through parents ---------------------------------------------------- */

/* The association with parent up, started on demand, started again after
 * one that failed; NULL when all slots hold other parents' (or no memory). */
static struct udpparent *
udpassoc_parent(struct udpassoc *u, const struct upstream *up)
{
	int free_slot = -1;

	for (int i = 0; i < UDPASSOC_MAX_PARENTS; i++) {
		struct udpparent *p = u->parents[i];

		if (p && udpparent_failed(p)) {
			udpparent_stop(p);
			u->parents[i] = p = NULL;
		}
		if (p && udpparent_upstream(p) == up)
			return p;
		if (!p && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return NULL;
	return u->parents[free_slot] = udpparent_start(&u->popt, up);
}

/* Charges a datagram of len DATA bytes in direction dir (0: to a
 * destination, 1: to the client) to the session's limits; false: over
 * them, dropped and counted (UDP has no backpressure). */
static bool
udpassoc_charge(struct udpassoc *u, int dir, size_t len)
{
	if (!u->meter || u->meter(dir, len, u->meter_arg))
		return true;
	u->stats.dropped[UDPASSOC_DROP_RATE]++;
	return false;
}

/* DATA for dst (a name stays a name) through parent up, or dropped. */
static void
udpassoc_to_parent(struct udpassoc *u, const struct upstream *up, const struct socks_addr *dst,
	const uint8_t *p, size_t len)
{
	struct udpparent *par;

	if (!udpassoc_charge(u, 0, len))
		return;
	par = udpassoc_parent(u, up);
	if (!par || !udpparent_send(par, dst, p, len)) {
		u->stats.dropped[UDPASSOC_DROP_PARENT]++;
		return;
	}
	u->stats.dgrams_up++;
	u->stats.bytes_up += len;
}

/* A datagram from a parent's relay, with the header the client gets: its
 * source is judged as any answer's, then it goes to the client as it is. */
static void
udpassoc_from_parent(const struct socks_addr *src, const uint8_t *p, size_t len, size_t hlen,
	void *arg)
{
	struct udpassoc *u = arg;
	const struct upstream *ignored;
	union sockaddr_any a;
	socklen_t alen;

	if (u->stopped || !u->have_ep)
		return;
	if (src->atyp != SOCKS_ATYP_DOMAIN && proto_addr_to_sockaddr(src, &a.ss, &alen) == 0) {
		addr_unmap(&a);
		if (!udpassoc_allowed(u, &u->from_v, &a, NULL, &ignored)) {
			u->stats.dropped[UDPASSOC_DROP_DENIED_IN]++;
			return;
		}
	}
	if (!udpassoc_charge(u, 1, len - hlen))
		return;
	if (sendto(u->relay_w.fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, &u->client_ep.sa,
		    addr_len(&u->client_ep)) < 0) {
		u->stats.dropped[udpassoc_transient(errno) ? UDPASSOC_DROP_BLOCKED
							   : UDPASSOC_DROP_ERROR]++;
		return;
	}
	u->stats.dgrams_down++;
	u->stats.bytes_down += len - hlen;
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

/* Puts DATA for an IP destination (unmapped, port set) on the send list of
 * its family's outbound socket (opened on first use), or drops it. p must
 * stay valid until udpassoc_flush_out. */
static void
udpassoc_queue_out(struct udpassoc *u, const union sockaddr_any *to, const char *name,
	const uint8_t *p, size_t len)
{
	int which = to->sa.sa_family == AF_INET6 ? UDPASSOC_OUT6 : UDPASSOC_OUT4;
	const struct upstream *parent;
	struct udpassoc_tx *tx;

	/* Rules are checked per datagram against the address it really goes
	 * to, so a name resolving into a denied network is refused too. */
	if (!udpassoc_allowed(u, &u->to_v, to, name, &parent)) {
		u->stats.dropped[UDPASSOC_DROP_DENIED]++;
		return;
	}
	if (parent) {
		struct socks_addr dst;

		proto_addr_from_sockaddr(&dst, &to->sa);
		udpassoc_to_parent(u, parent, &dst, p, len);
		return;
	}
	if (!udpassoc_charge(u, 0, len))
		return;
	if (u->out_w[which].fd < 0 && udpassoc_open_out(u, which) < 0) {
		char b[ADDR_STRLEN];

		u->stats.dropped[UDPASSOC_DROP_ERROR]++;
		log_warn("udp assoc bnd=%s: outbound %s socket", addr_format(&u->bnd, b, sizeof(b)),
			which == UDPASSOC_OUT6 ? "IPv6" : "IPv4");
		return;
	}
	tx = &udpassoc_arena.tx[which][udpassoc_arena.ntx[which]++];
	tx->p = p;
	tx->len = len;
	tx->hdr = 0;
	tx->to = to;
}

/* Sends what udpassoc_queue_out put on the outbound send lists. */
static void
udpassoc_flush_out(struct udpassoc *u)
{
	for (int which = 0; which < UDPASSOC_NOUT; which++) {
		size_t n = udpassoc_arena.ntx[which];

		udpassoc_arena.ntx[which] = 0;
		if (n)
			udpassoc_send_batch(u, which, udpassoc_arena.tx[which], n);
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
	struct udpassoc_pending **pp = &u->qhead, *e, *done = NULL, **dtail = &done;

	while ((e = *pp) != NULL) {
		if (!e->answered || udpassoc_name_blocked(u, e)) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		u->qcount--;
		u->qbytes -= e->len;
		e->next = NULL;
		*dtail = e;
		dtail = &e->next;
		/* At most UDPASSOC_QUEUE_MAX (< UDPASSOC_BATCH) per send list. */
		if (e->resolved)
			udpassoc_queue_out(u, &e->to, e->dst.name, e->data, e->len);
		else
			u->stats.dropped[UDPASSOC_DROP_UNRESOLVED]++;
	}
	udpassoc_flush_out(u);
	while ((e = done) != NULL) {
		done = e->next;
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

/* A datagram from the client's IP but not from the port the request named,
 * before any from that port: most likely a NAT that changed the port. Said
 * once at info, since every datagram will be dropped. */
static void
udpassoc_warn_port(struct udpassoc *u, const union sockaddr_any *src)
{
	char b[ADDR_STRLEN], c[ADDR_STRLEN];

	u->port_warned = true;
	log_info("udp assoc bnd=%s: datagrams from %s, but the request named port %u: dropped "
		 "(behind NAT? a client that does not know its port sends 0)",
		addr_format(&u->bnd, b, sizeof(b)), addr_format(src, c, sizeof(c)),
		addr_port(&u->client));
}

/* Whether a datagram from src (unmapped) is the client's. */
static bool
udpassoc_from_client(struct udpassoc *u, const union sockaddr_any *src)
{
	if (!addr_ip_equal(src, &u->client))
		return false;
	if (!u->port_pinned || addr_port(src) == addr_port(&u->client)) {
		u->port_confirmed = true;
		return true;
	}
	if (u->port_from_request && !u->port_confirmed && !u->port_warned)
		udpassoc_warn_port(u, src);
	return false;
}

/* The first well-formed datagram from the client's IP fixes its port (the
 * request said 0, or named an address behind NAT): garbage from another
 * socket on that host cannot take the slot. */
static void
udpassoc_pin_port(struct udpassoc *u, const union sockaddr_any *src)
{
	addr_set_port(&u->client, addr_port(src));
	u->port_pinned = true;
	if (log_enabled(LOG_LVL_DEBUG)) {
		char b[ADDR_STRLEN], c[ADDR_STRLEN];

		log_debug("udp assoc bnd=%s client=%s pinned", addr_format(&u->bnd, b, sizeof(b)),
			addr_format(src, c, sizeof(c)));
	}
}

/* A datagram for a name: refused, sent to the parent its rule names (the
 * name unresolved), or looked up and judged again by its address. */
static void
udpassoc_up_name(struct udpassoc *u, const struct socks_addr *dst, const uint8_t *p, size_t len)
{
	const struct upstream *parent = NULL;

	if (u->allow && !u->allow(NULL, dst->name, dst->port, &parent, u->allow_arg)) {
		u->stats.dropped[UDPASSOC_DROP_DENIED]++;
		return;
	}
	if (parent) {
		udpassoc_to_parent(u, parent, dst, p, len);
		return;
	}
	udpassoc_enqueue(u, dst, p, len);
}

/* Datagram i of the batch, read from the relay socket: RFC 1928 §7 header,
 * then DATA to DST.ADDR:DST.PORT, queued for its outbound socket (or for a
 * name lookup) in place, or dropped and counted. */
static void
udpassoc_up(struct udpassoc *u, int i)
{
	const struct mmsghdr *m = &udpassoc_arena.in[i];
	const uint8_t *p = udpassoc_slots[i] + UDPASSOC_HEADROOM;
	union sockaddr_any src = udpassoc_arena.from[i], *to = &udpassoc_arena.to[i];
	struct proto_udp_header h;
	socklen_t tolen;

	addr_unmap(&src);
	if (!udpassoc_from_client(u, &src)) {
		u->stats.dropped[UDPASSOC_DROP_FOREIGN]++;
		return;
	}
	if ((m->msg_hdr.msg_flags & MSG_TRUNC) ||
		proto_parse_udp_header(p, m->msg_len, &h) != PROTO_OK || h.dst.port == 0) {
		u->stats.dropped[UDPASSOC_DROP_MALFORMED]++;
		return;
	}
	/* RFC 1928 §7: an implementation that does not support fragmentation
	 * MUST drop any datagram whose FRAG field is other than X'00'. */
	if (h.frag != 0) {
		u->stats.dropped[UDPASSOC_DROP_FRAG]++;
		return;
	}
	if (!u->port_pinned)
		udpassoc_pin_port(u, &src);
	if (!u->have_ep) {
		u->client_ep = udpassoc_arena.from[i];
		u->have_ep = true;
	}
	u->last_active_ms = loop_now(u->loop);
	if (h.dst.atyp == SOCKS_ATYP_DOMAIN) {
		udpassoc_up_name(u, &h.dst, p + h.header_len, m->msg_len - h.header_len);
		return;
	}
	if (proto_addr_to_sockaddr(&h.dst, &to->ss, &tolen) < 0) {
		u->stats.dropped[UDPASSOC_DROP_MALFORMED]++;
		return;
	}
	addr_unmap(to);
	udpassoc_queue_out(u, to, NULL, p + h.header_len, m->msg_len - h.header_len);
}

static void
udpassoc_on_relay(struct loop *loop, unsigned events, void *arg)
{
	struct udpassoc *u = arg;
	int n;

	/* u->stopped: stopped earlier in this batch (memory still valid until
	 * the release list runs). */
	if (u->stopped)
		return;
	n = udpassoc_recv_batch(u, u->relay_w.fd, "relay", "udp relay socket error");
	for (int i = 0; i < n; i++)
		udpassoc_up(u, i);
	udpassoc_flush_out(u);
}

/* Datagrams from any source to an outbound socket go back to the client,
 * each behind a header naming that source (RFC 1928 §7), written into the
 * slot's headroom right in front of the payload. */
static void
udpassoc_on_out(struct udpassoc *u, int which)
{
	struct udpassoc_tx *tx = udpassoc_arena.tx[UDPASSOC_RELAY];
	int n = udpassoc_recv_batch(u, u->out_w[which].fd, "outbound", "udp outbound socket error");
	size_t ntx = 0;

	for (int i = 0; i < n; i++) {
		const struct mmsghdr *m = &udpassoc_arena.in[i];
		union sockaddr_any *from = &udpassoc_arena.from[i];
		const struct upstream *ignored;
		uint8_t hdr[PROTO_UDP_HEADER_MAX], *p;
		size_t hlen;

		/* Nobody to deliver to yet. */
		if (!u->have_ep || (m->msg_hdr.msg_flags & MSG_TRUNC))
			continue;
		addr_unmap(from);
		/* Only sources the rules would let the client send to may
		 * answer it (an open outbound port is no open door). */
		if (!udpassoc_allowed(u, &u->from_v, from, NULL, &ignored)) {
			u->stats.dropped[UDPASSOC_DROP_DENIED_IN]++;
			continue;
		}
		if (!udpassoc_charge(u, 1, m->msg_len))
			continue;
		hlen = proto_encode_udp_header(hdr, &from->sa);
		p = udpassoc_slots[i] + UDPASSOC_HEADROOM - hlen;
		memcpy(p, hdr, hlen);
		tx[ntx].p = p;
		tx[ntx].len = hlen + m->msg_len;
		tx[ntx].hdr = hlen;
		tx[ntx].to = &u->client_ep;
		ntx++;
	}
	if (ntx)
		udpassoc_send_batch(u, UDPASSOC_RELAY, tx, ntx);
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
 * send from. Datagrams are accepted from the control connection's peer
 * only, whatever the request says (a client cannot hand its association to
 * another host). An address other than that peer's is a client behind NAT
 * that wrote its private address (issue 17): its port is from the same side
 * of the NAT, so the port is learnt from the first datagram instead. Else a
 * port pins the client's port at once. A domain name there cannot be checked
 * without a lookup and is ignored. */
static void
udpassoc_apply_request(struct udpassoc *u, const struct socks_addr *req)
{
	union sockaddr_any ra;
	socklen_t ralen;

	if (!req)
		return;
	if ((req->atyp == SOCKS_ATYP_IPV4 || req->atyp == SOCKS_ATYP_IPV6) &&
		!proto_addr_is_unspecified(req) &&
		proto_addr_to_sockaddr(req, &ra.ss, &ralen) == 0) {
		addr_unmap(&ra);
		if (!addr_ip_equal(&ra, &u->client)) {
			u->behind_nat = true;
			return;
		}
	}
	if (req->port != 0) {
		addr_set_port(&u->client, req->port);
		u->port_pinned = true;
		u->port_from_request = true;
	}
}

/* Once per association, at info: the request's address was not the
 * client's, so datagrams are taken from the control connection's peer. */
static void
udpassoc_log_nat(const struct udpassoc *u, const struct socks_addr *req)
{
	char b[ADDR_STRLEN], c[ADDR_STRLEN], r[PROTO_UDP_HEADER_MAX * 4];

	/* proto_addr_format escapes whatever the client wrote. */
	proto_addr_format(req, r, sizeof(r));
	log_info("udp assoc bnd=%s: the request named %s, not the client's address %s (behind "
		 "NAT?): datagrams are taken from %s, port from the first one",
		addr_format(&u->bnd, b, sizeof(b)), r, addr_ip_format(&u->client, c, sizeof(c)), c);
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
		u->behind_nat ? " (request named another address)" : "");
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
	u->popt = opt->parent;
	u->popt.recv = udpassoc_from_parent;
	u->popt.arg = u;
	u->meter = opt->meter;
	u->meter_arg = opt->meter_arg;
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
	if (u->behind_nat && log_enabled(LOG_LVL_INFO))
		udpassoc_log_nat(u, req);
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
	for (int i = 0; i < UDPASSOC_MAX_PARENTS; i++)
		udpparent_stop(u->parents[i]);
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
