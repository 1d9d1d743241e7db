/*
 * parent: the parents' up/down state and counters, and the socket I/O of a
 * handshake with one (the protocol is upstream's).
 */
#include "parent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

void
parents_init(struct parents *ps)
{
	ps->head = NULL;
	ps->tail = &ps->head;
}

void
parents_free(struct parents *ps)
{
	struct parent_state *p, *next;

	for (p = ps->head; p; p = next) {
		next = p->next;
		free(p);
	}
	parents_init(ps);
}

/* Parents are few (a handful per rule): a list walked by label is enough. */
struct parent_state *
parents_get(struct parents *ps, const struct upstream *u)
{
	struct parent_state *p;

	for (p = ps->head; p; p = p->next)
		if (strcmp(p->label, u->label) == 0)
			return p;
	if (!(p = calloc(1, sizeof(*p))))
		return NULL;
	memcpy(p->label, u->label, sizeof(p->label));
	*ps->tail = p;
	ps->tail = &p->next;
	return p;
}

bool
parent_is_down(const struct parent_state *p, uint64_t now_ms)
{
	return p->down_until_ms > now_ms;
}

void
parent_answered(struct parent_state *p)
{
	p->sessions++;
	if (p->down_until_ms)
		log_info("parent %s answers again: up", p->label);
	p->in_a_row = 0;
	p->down_until_ms = 0;
}

/* Once a mark runs out the parent is tried again, and one more failure
 * (the count stays at the limit) marks it down again at once. */
void
parent_failed(struct parent_state *p, const char *why, uint64_t now_ms, unsigned down_after,
	unsigned down_for_s)
{
	p->failures++;
	if (p->in_a_row < UINT32_MAX)
		p->in_a_row++;
	if (down_after == 0 || p->in_a_row < down_after || parent_is_down(p, now_ms))
		return;
	p->down_until_ms = now_ms + (uint64_t)down_for_s * 1000u;
	log_warnx("parent %s is down for %u s after %u failures in a row (last: %s)", p->label,
		down_for_s, p->in_a_row, why);
}

int
parent_hs_send(struct upstream_hs *h, int fd)
{
	while (h->out_len > 0) {
		ssize_t n = send(fd, h->out, h->out_len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		upstream_hs_sent(h, (size_t)n);
	}
	return 0;
}

/* Peek, feed, then take exactly what the message used: the socket is
 * level-triggered, so bytes the parser saw but did not want stay readable
 * and are never lost to a buffer of ours. */
enum upstream_feed
parent_hs_recv(struct upstream_hs *h, int fd)
{
	uint8_t peek[UPSTREAM_IN_MAX], sink[UPSTREAM_IN_MAX];
	enum upstream_feed st = UPSTREAM_FEED_MORE;

	while (st == UPSTREAM_FEED_MORE || st == UPSTREAM_FEED_STEP) {
		ssize_t n = recv(fd, peek, sizeof(peek), MSG_PEEK);
		size_t taken = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return st;
		if (n <= 0) {
			upstream_hs_eof(h);
			if (n < 0)
				h->res.why = strerror(errno);
			return UPSTREAM_FEED_FAILED;
		}
		st = upstream_hs_feed(h, peek, (size_t)n, &taken);
		if (taken > 0 && recv(fd, sink, taken, 0) != (ssize_t)taken) {
			upstream_hs_eof(h);
			return UPSTREAM_FEED_FAILED;
		}
		/* A step queued the next message: the caller sends it first. */
		if (st == UPSTREAM_FEED_STEP)
			return st;
	}
	return st;
}
