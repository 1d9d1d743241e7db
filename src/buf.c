/*
 * buf: a fixed-capacity byte window over storage the owner provides. It
 * never grows: a full buffer is the signal to stop reading (backpressure).
 */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void
buf_init(struct buf *b, uint8_t *storage, size_t cap)
{
	b->data = storage;
	b->cap = cap;
	b->rpos = b->wpos = 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->rpos += n;
	/* An empty buffer restarts at the front: no compaction needed later. */
	if (b->rpos >= b->wpos)
		b->rpos = b->wpos = 0;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->wpos += n;
}

void
buf_compact(struct buf *b)
{
	size_t len = buf_len(b);

	if (b->rpos == 0)
		return;
	memmove(b->data, b->data + b->rpos, len);
	b->rpos = 0;
	b->wpos = len;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_space(b) < n)
		buf_compact(b);
	if (buf_space(b) < n)
		return -1;
	memcpy(buf_tail(b), p, n);
	b->wpos += n;
	return 0;
}

ssize_t
buf_fill(struct buf *b, int fd)
{
	return buf_fill_max(b, fd, SIZE_MAX);
}

ssize_t
buf_fill_max(struct buf *b, int fd, size_t max)
{
	ssize_t n;

	if (buf_space(b) == 0)
		buf_compact(b);
	if (buf_space(b) == 0) {
		errno = ENOBUFS;
		return -1;
	}
	do {
		n = read(fd, buf_tail(b), buf_space(b) < max ? buf_space(b) : max);
	} while (n < 0 && errno == EINTR);
	if (n > 0)
		b->wpos += (size_t)n;
	return n;
}

ssize_t
buf_drain(struct buf *b, int fd)
{
	ssize_t n;

	if (buf_len(b) == 0)
		return 0;
	do {
		n = send(fd, buf_peek(b), buf_len(b), MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n > 0)
		buf_consume(b, (size_t)n);
	return n;
}
