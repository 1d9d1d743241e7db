/*
 * metrics: Prometheus text exposition over plain HTTP/1.1 from the event
 * loop. GET /metrics only; anything else 404 (other methods 405, malformed
 * requests 400); requests are bounded in size and time. Also the daemon's
 * exposition text itself (metrics_render).
 */
#ifndef SOCKS5D_METRICS_H
#define SOCKS5D_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"

struct account;
struct loop;
struct metrics_server;
struct parents;
struct pwcheck;
struct resolver;
struct stats;

/* Writes the exposition text (all metrics) into out; called per scrape. */
typedef void (*metrics_render_cb)(FILE *out, void *arg);

/* Listens on addr; returns NULL with errno on failure. */
struct metrics_server *metrics_start(struct loop *loop, const union sockaddr_any *addr,
	metrics_render_cb render, void *arg);
/* Closes the listener and every client connection at once. */
void metrics_stop(struct metrics_server *m);

/* Limits per scrape connection. A request head (request line + headers)
 * that does not fit METRICS_REQUEST_MAX is answered 431; connections past
 * METRICS_MAX_CLIENTS are accepted and closed at once. */
#define METRICS_REQUEST_MAX 2048
#define METRICS_MAX_CLIENTS 64
#define METRICS_REQUEST_TIMEOUT_MS 5000

/* The address the listener is bound to (the real port when addr asked for
 * port 0). Returns 0, or -1 with errno. */
int metrics_local_addr(const struct metrics_server *m, union sockaddr_any *out)
	__attribute__((warn_unused_result));
/* Time a connection gets to send its request, and again to take the
 * response, before it is closed (default METRICS_REQUEST_TIMEOUT_MS).
 * Applies to connections accepted afterwards; tests shorten it. */
void metrics_set_request_timeout_ms(struct metrics_server *m, unsigned ms);

/* What the daemon's exposition reads at each scrape. */
struct metrics_sources {
	const struct stats *stats;       /* session counters */
	const struct resolver *resolver; /* DNS counters */
	struct pwcheck *const *pwcheck;  /* password checks (NULL inside: none yet) */
	const struct parents *parents;   /* parent proxies' state and counters, or NULL */
	int worker;                      /* worker="N" label on every sample; -1: none */
	struct account *acct;            /* per-user totals, quotas; NULL: none */
	unsigned metrics_users;          /* users with series of their own */
};
/* A metrics_render_cb for the daemon: arg is a struct metrics_sources.
 * Adds the relay's and pipe pool's counters and the open descriptors. */
void metrics_render(FILE *out, void *arg);

#endif
