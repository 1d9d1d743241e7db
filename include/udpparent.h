/*
 * udpparent: a UDP ASSOCIATE that socks5d opens with a SOCKS5 parent proxy
 * on behalf of a client's association (a rule's `via` routes some of its
 * datagrams there). Its TCP control connection (looked up, connected and
 * negotiated in the loop) and a UDP socket connected to the parent's relay.
 * Datagrams given to it before the parent answered wait in a small bounded
 * queue; once it is up each goes out with a SOCKS UDP header naming its
 * destination (a name stays a name: the parent resolves it). What the
 * parent's relay sends back already carries the header a client expects,
 * naming the source: it is handed up as it is.
 */
#ifndef SOCKS5D_UDPPARENT_H
#define SOCKS5D_UDPPARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "egress.h"
#include "proto.h"

struct loop;
struct resolver;
struct parents;
struct upstream;
struct udpparent;

/* A datagram from the parent's relay, p[0..len) as the client gets it:
 * a header of hdr_len bytes naming its source src, then the data. */
typedef void (*udpparent_recv_cb)(const struct socks_addr *src, const uint8_t *p, size_t len,
	size_t hdr_len, void *arg);

struct udpparent_options {
	struct loop *loop;
	struct resolver *resolver;
	struct parents *parents; /* the parent's up/down state and counters */
	unsigned down_after;     /* parent-down-after */
	unsigned down_for_s;     /* parent-down-for */
	unsigned timeout_ms;     /* lookup, connect and handshake together */
	/* How the control connection and the datagrams leave (the session's
	 * merged settings): sources of each family (AF_UNSPEC: the kernel's
	 * choice), interface, mark, TOS, keepalive. */
	union sockaddr_any from4, from6;
	struct egress egress;
	udpparent_recv_cb recv;
	void *arg;
};

/* Starts opening an association with u (a SOCKS5 parent; u must outlive
 * it). NULL when out of memory. */
struct udpparent *udpparent_start(const struct udpparent_options *opt, const struct upstream *u);
/* Sends data to dst through the parent, or queues it until the parent
 * answered. False: dropped (the association failed, or the queue is full). */
bool udpparent_send(struct udpparent *p, const struct socks_addr *dst, const uint8_t *data,
	size_t len);
/* The association failed or ended (the parent closed its control
 * connection): it sends nothing more, and a new one may be started. */
bool udpparent_failed(const struct udpparent *p);
const struct upstream *udpparent_upstream(const struct udpparent *p);
/* Closes everything at once; the memory goes after the loop batch. NULL is
 * a no-op; idempotent. */
void udpparent_stop(struct udpparent *p);

#endif
