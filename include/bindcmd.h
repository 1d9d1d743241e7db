/*
 * bindcmd: the listening half of a SOCKS BIND (RFC 1928 §4, §6). Opens a
 * listener, accepts connections until one comes from the expected host, and
 * hands that connection to its owner. The owner (conn) sends the replies,
 * runs the timeout and starts the relay.
 */
#ifndef SOCKS5D_BINDCMD_H
#define SOCKS5D_BINDCMD_H

#include <stdint.h>

#include "addr.h"

struct bindcmd;
struct egress;
struct loop;

/* peer_fd >= 0: the accepted connection (owned by the callee now) from
 * *peer. peer_fd < 0: the listener failed with err. Called once, never from
 * inside bindcmd_start; the bindcmd must then be freed with bindcmd_stop. */
typedef void (*bindcmd_cb)(int peer_fd, int err, const union sockaddr_any *peer, void *arg);

/* Listens on addr's IP (port from lo..hi, or any when both are 0) with the
 * socket settings e (NULL: none; the peer's connection inherits them).
 * When expect is non-NULL, connections from other IPs are closed at once
 * and the listener keeps waiting. *bound receives the listening address.
 * Returns NULL with errno on failure. */
struct bindcmd *bindcmd_start(struct loop *loop, const union sockaddr_any *addr, uint16_t lo,
	uint16_t hi, const union sockaddr_any *expect, const struct egress *e,
	union sockaddr_any *bound, bindcmd_cb cb, void *arg);
/* Unregisters and closes the listener at once (the port refuses
 * connections afterwards) and queues the release for the end of the batch.
 * Idempotent. */
void bindcmd_stop(struct bindcmd *b);

#endif
