/*
 * listener: listening sockets. Accepts until EAGAIN (in batches), hands each
 * connection to conn, and survives fd exhaustion: at EMFILE/ENFILE it sheds
 * the new connection through a reserved descriptor and pauses briefly
 * instead of spinning on a backlog it cannot accept.
 */
#ifndef SOCKS5D_LISTENER_H
#define SOCKS5D_LISTENER_H

#include <stdbool.h>

#include "addr.h"

struct conn_env;
struct egress;
struct listener;

/* Listeners opened from now on share their address with other processes
 * (SO_REUSEPORT), for worker processes. */
void listener_set_reuseport(bool on);
/* Binds and listens on addr with backlog. The TCP settings of e
 * (keepalive, user timeout; NULL: none) go on the listening socket, which
 * accepted clients inherit. Returns NULL with errno on failure. */
struct listener *listener_open(struct conn_env *env, const union sockaddr_any *addr,
	bool proxy_protocol, int backlog, const struct egress *e);
/* Adopts an already listening socket (socket activation), with e's TCP
 * settings. Returns NULL with errno on failure (the fd is left open). */
struct listener *listener_adopt(struct conn_env *env, int fd, const struct egress *e);
/* A reload: the backlog (0: keep it) and e's TCP settings for the
 * connections accepted from now on. Failures are logged. */
void listener_configure(struct listener *l, int backlog, const struct egress *e);
/* Stops accepting: unregisters and closes the socket at once and queues
 * the release for the end of the batch. Idempotent. */
void listener_stop(struct listener *l);
const union sockaddr_any *listener_addr(const struct listener *l);
bool listener_proxy_protocol(const struct listener *l);

#endif
