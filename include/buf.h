/*
 * buf: fixed-capacity byte buffer with read and write positions. It never
 * grows; the owner chooses the storage.
 */
#ifndef SOCKS5D_BUF_H
#define SOCKS5D_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf {
	uint8_t *data; /* storage, cap bytes */
	size_t cap;    /* capacity */
	size_t rpos;   /* first unread byte */
	size_t wpos;   /* one past the last written byte */
};

void buf_init(struct buf *b, uint8_t *storage, size_t cap);
static inline size_t
buf_len(const struct buf *b)
{
	return b->wpos - b->rpos;
}
static inline const uint8_t *
buf_peek(const struct buf *b)
{
	return b->data + b->rpos;
}
static inline size_t
buf_space(const struct buf *b)
{
	return b->cap - b->wpos;
}
static inline uint8_t *
buf_tail(struct buf *b)
{
	return b->data + b->wpos;
}
void buf_consume(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Moves unread bytes to the front so the whole free space is at the tail. */
void buf_compact(struct buf *b);
/* Appends n bytes; returns -1 (nothing written) when they do not fit. */
int buf_append(struct buf *b, const void *p, size_t n) __attribute__((warn_unused_result));

/* read() into the tail. Returns bytes read (>0), 0 on EOF, -1 on error with
 * errno set; EAGAIN is reported as -1/EAGAIN (the caller waits). EINTR is
 * retried here. Compacts first when the tail is full. */
ssize_t buf_fill(struct buf *b, int fd) __attribute__((warn_unused_result));
/* buf_fill reading at most max bytes. */
ssize_t buf_fill_max(struct buf *b, int fd, size_t max) __attribute__((warn_unused_result));
/* write() unread bytes; same conventions. */
ssize_t buf_drain(struct buf *b, int fd) __attribute__((warn_unused_result));

#endif
