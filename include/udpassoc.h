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
#include <stdint.h>

#include "net.h"
#include "proto.h"

struct loop;
struct resolver;
struct udpassoc;

struct udpassoc_stats {
	uint64_t dgrams_up, bytes_up;     /* client -> destinations (payload bytes) */
	uint64_t dgrams_down, bytes_down; /* destinations -> client (payload bytes) */
	uint64_t dropped_frag;            /* FRAG != 0 */
	uint64_t dropped_malformed;       /* bad header */
	uint64_t dropped_foreign;         /* not from the client's address/port */
	uint64_t dropped_blocked;         /* socket would block (UDP: dropped) */
	uint64_t dropped_queue;           /* lookup queue full */
	uint64_t dropped_unresolved;      /* name did not resolve */
	uint64_t dropped_error;           /* send failed (unreachable, too big, no socket) */
	uint64_t dropped_denied;          /* refused by the access rules */
};

struct udpassoc_options {
	uint16_t port_lo, port_hi;             /* relay socket port range; 0,0 = any */
	const union sockaddr_any *external4;   /* outbound IPv4 source, or NULL */
	const union sockaddr_any *external6;   /* outbound IPv6 source, or NULL */
	unsigned idle_ms;                      /* 0: no idle timeout */
	/* Asked before each datagram leaves: may it go to dst (name: the
	 * requested domain, or NULL)? NULL allows everything. */
	bool (*allow)(const union sockaddr_any *dst, const char *name, void *arg);
	void *allow_arg;
};

/* Called once when the association ends by itself (idle timeout, socket
 * error); never from inside udpassoc_start or udpassoc_stop. The caller then
 * calls udpassoc_stop to free it. */
typedef void (*udpassoc_end_cb)(const char *why, void *arg);

/* Opens the relay socket on tcp_local's IP (the address the client reached
 * us on; port from the range or any) and fills *bnd with the address and
 * port to announce. client_ip is the TCP control connection's peer; req is
 * the request's DST (0.0.0.0:0 / :: when the client does not know yet).
 * Returns NULL with errno on failure. */
struct udpassoc *udpassoc_start(struct loop *loop, struct resolver *resolver,
	const struct udpassoc_options *opt, const union sockaddr_any *client_ip,
	const union sockaddr_any *tcp_local, const struct socks_addr *req,
	union sockaddr_any *bnd, udpassoc_end_cb end, void *arg);
/* Closes every socket at once, cancels lookups, frees (deferred to the end
 * of the loop batch). */
void udpassoc_stop(struct udpassoc *u);
const struct udpassoc_stats *udpassoc_get_stats(const struct udpassoc *u);

#endif
