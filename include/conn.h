/*
 * conn: one client connection's state machine, from the greeting to the end
 * of its relay: greeting -> (RFC 1929 auth) -> request -> resolve/connect ->
 * reply -> relay -> close. It owns the client fd from accept on.
 */
#ifndef SOCKS5D_CONN_H
#define SOCKS5D_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"

struct loop;
struct config;
struct resolver;
struct conn;

/* Process-wide counters (reported at SIGUSR1 and shutdown). */
struct conn_stats {
	uint64_t accepted;
	uint64_t active;
	uint64_t auth_failures;
	uint64_t bytes_up;   /* client -> target */
	uint64_t bytes_down; /* target -> client */
};

/* What every connection shares: the loop, the config new sessions use, the
 * resolver, the list of live connections (for shutdown) and counters. */
struct conn_env {
	struct loop *loop;
	struct config *cfg;          /* config for new sessions; sessions hold a ref */
	struct resolver *resolver;
	struct conn *head;           /* live connections */
	uint64_t next_id;
	struct conn_stats stats;
	void (*on_empty)(void *arg); /* called when active drops to 0 (shutdown) */
	void *on_empty_arg;
};

/* Takes the accepted fd (nonblocking). On failure the fd is closed and the
 * reason logged. peer/local are the addresses of the client connection. */
void conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local);
/* Closes every connection at once (end of the shutdown drain). */
void conn_close_all(struct conn_env *env);

#endif
