/*
 * metrics: Prometheus text exposition over plain HTTP/1.1 from the event
 * loop. GET /metrics only; anything else 404 (other methods 405, malformed
 * requests 400); requests are bounded in size and time.
 */
#ifndef SOCKS5D_METRICS_H
#define SOCKS5D_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "net.h"

struct loop;
struct metrics_server;

/* Writes the exposition text (all metrics) into out; called per scrape. */
typedef void (*metrics_render_cb)(FILE *out, void *arg);

/* Listens on addr; returns NULL with errno on failure. */
struct metrics_server *metrics_start(struct loop *loop, const union sockaddr_any *addr,
	metrics_render_cb render, void *arg);
/* Closes the listener and every client connection at once. */
void metrics_stop(struct metrics_server *m);

#endif
