/*
 * parent: parent proxies at run time. Each parent (by its label,
 * "scheme://host:port") has one entry for the life of the process, kept
 * across reloads: whether it is up, or marked down until some time after
 * parent-down-after failures in a row, and its counters for the metrics.
 * Also the socket side of a handshake with a parent: sending what upstream
 * queued and peeking at the parent's bytes so that only the handshake's
 * own are taken from the socket.
 */
#ifndef SOCKS5D_PARENT_H
#define SOCKS5D_PARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

struct parent_state {
	char label[UPSTREAM_LABEL_MAX];
	uint64_t sessions;      /* requests the parent answered (any reply) */
	uint64_t failures;      /* attempts that failed at the parent itself */
	unsigned in_a_row;      /* failures since its last answer */
	uint64_t down_until_ms; /* loop time it is marked down until; 0: up */
	struct parent_state *next;
};

/* Every parent seen so far, in the order first seen. */
struct parents {
	struct parent_state *head, **tail;
};

void parents_init(struct parents *ps);
void parents_free(struct parents *ps);
/* The entry of u's parent, added when new; NULL when out of memory. */
struct parent_state *parents_get(struct parents *ps, const struct upstream *u);

/* Whether p is marked down at now (a mark that ran out is up again). */
bool parent_is_down(const struct parent_state *p, uint64_t now_ms);
/* The parent answered a request: counted, and up again (logged when it
 * was marked down). */
void parent_answered(struct parent_state *p);
/* The parent failed (why: for the log). After down_after failures in a row
 * (0: never) it is marked down for down_for_s seconds, logged once per mark. */
void parent_failed(struct parent_state *p, const char *why, uint64_t now_ms, unsigned down_after,
	unsigned down_for_s);

/* Sends what h queued to fd. Returns 0 (h->out_len > 0: wait until fd is
 * writable), or -1 with errno. */
int parent_hs_send(struct upstream_hs *h, int fd) __attribute__((warn_unused_result));
/* Reads the parent's answer from fd, one message at a time, taking only
 * the handshake's bytes: the target's first bytes stay in the socket.
 * Returns what the last feed said (UPSTREAM_FEED_MORE: wait until fd is
 * readable); the parent's EOF or a socket error is UPSTREAM_FEED_FAILED. */
enum upstream_feed parent_hs_recv(struct upstream_hs *h, int fd);

#endif
