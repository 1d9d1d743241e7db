/*
 * udpassoc: one UDP ASSOCIATE (RFC 1928 §7). A relay socket for the client,
 * pinned to the client's address; outbound sockets per address family for
 * the destinations; domain destinations resolved through the resolver with a
 * small bounded queue. It lives as long as its TCP control connection: conn
 * owns that connection and calls udpassoc_stop when it ends.
 */
#ifndef SOCKS5D_UDPASSOC_H
#define SOCKS5D_UDPASSOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "proto.h"
#include "udpparent.h"

struct egress;
struct loop;
struct resolver;
struct udpassoc;
struct upstream;

/* Datagrams one readiness event of one of an association's sockets reads
 * (one recvmmsg) and sends on before the loop serves anyone else: a busy
 * association cannot starve the others or the TCP sessions; the rest waits
 * for the next loop iteration. */
#define UDPASSOC_BATCH 32

/* Why a datagram was dropped: indexes of udpassoc_stats.dropped. */
enum udpassoc_drop {
	UDPASSOC_DROP_FRAG,       /* FRAG != 0 */
	UDPASSOC_DROP_MALFORMED,  /* bad header */
	UDPASSOC_DROP_FOREIGN,    /* not from the client's address/port */
	UDPASSOC_DROP_BLOCKED,    /* socket would block (UDP: dropped) */
	UDPASSOC_DROP_QUEUE,      /* lookup queue full */
	UDPASSOC_DROP_UNRESOLVED, /* name did not resolve */
	UDPASSOC_DROP_ERROR,      /* send failed (unreachable, too big, no socket) */
	UDPASSOC_DROP_DENIED,     /* refused by the access rules */
	UDPASSOC_DROP_DENIED_IN,  /* from a source the rules refuse as a destination */
	UDPASSOC_DROP_PARENT,     /* the parent's association failed or its queue is full */
	UDPASSOC_DROP_RATE,       /* over a rate limit or quota (the meter said no) */
	UDPASSOC_DROP_REASONS
};

/* The reasons' names, for logs and metrics labels, in enum order. */
extern const char *const udpassoc_drop_names[UDPASSOC_DROP_REASONS];

struct udpassoc_stats {
	uint64_t dgrams_up, bytes_up;     /* client -> destinations (payload bytes) */
	uint64_t dgrams_down, bytes_down; /* destinations -> client (payload bytes) */
	uint64_t dropped[UDPASSOC_DROP_REASONS];
};

struct udpassoc_options {
	uint16_t port_lo, port_hi;           /* relay socket port range; 0,0 = any */
	const union sockaddr_any *external4; /* outbound IPv4 source, or NULL */
	const union sockaddr_any *external6; /* outbound IPv6 source, or NULL */
	const struct egress *egress;         /* outbound sockets' settings (copied), or NULL */
	unsigned idle_ms;                    /* 0: no idle timeout */
	/* Asked before each datagram leaves: may it go to dst at port (name:
	 * the requested domain, or NULL), and through which parent (*parent,
	 * NULL: directly)? dst is NULL for a name not looked up yet: false then
	 * means refused, true with a parent sends the name to that parent
	 * unresolved, true without one has the name looked up and asked about
	 * again with its address. Also asked for each datagram that arrives
	 * for the client, about its source (name NULL): what the rules refuse
	 * as a destination may not answer either. Its answer for an address
	 * (name NULL) must not change during the association: the last one per
	 * direction is remembered. NULL allows everything, directly. */
	bool (*allow)(const union sockaddr_any *dst, const char *name, uint16_t port,
		const struct upstream **parent, void *arg);
	void *allow_arg;
	/* For associations with parents: loop, resolver, parents, their
	 * down-marking and timeout, the outbound sources (recv and arg are
	 * udpassoc's). */
	struct udpparent_options parent;
	/* Asked before each datagram is sent on, with its DATA length and
	 * direction (0: to a destination, 1: to the client): false drops it
	 * (UDP has no backpressure). NULL: no limits. */
	bool (*meter)(int dir, size_t len, void *arg);
	void *meter_arg;
};

/* Called once when the association ends by itself (idle timeout, socket
 * error), after it has stopped (as udpassoc_stop does); never from inside
 * udpassoc_start or udpassoc_stop. A later udpassoc_stop does nothing. */
typedef void (*udpassoc_end_cb)(const char *why, void *arg);

/* Opens the relay socket on tcp_local's IP (the address the client reached
 * us on; port from the range or any) and fills *bnd with the address and
 * port to announce. client_ip is the TCP control connection's peer, the
 * only address datagrams are accepted from; req is the request's DST
 * (0.0.0.0:0 / :: when the client does not know yet): its port, when not
 * 0, pins the client's port, unless its address is not client_ip (a client
 * behind NAT naming its private address): then the port is learnt from the
 * first datagram, as for port 0. Returns NULL with errno on failure. */
struct udpassoc *udpassoc_start(struct loop *loop, struct resolver *resolver,
	const struct udpassoc_options *opt, const union sockaddr_any *client_ip,
	const union sockaddr_any *tcp_local, const struct socks_addr *req, union sockaddr_any *bnd,
	udpassoc_end_cb end, void *arg);
/* At most this many parents serve one association at once. */
#define UDPASSOC_MAX_PARENTS 4

/* Unregisters and closes every socket at once, cancels lookups, and queues
 * the release for the end of the loop batch. Idempotent: sets stopped. */
void udpassoc_stop(struct udpassoc *u);
const struct udpassoc_stats *udpassoc_get_stats(const struct udpassoc *u);

#endif
