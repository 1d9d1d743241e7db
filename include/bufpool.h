/*
 * bufpool: the relay's copy buffers. A buffer is taken only while a
 * direction has bytes in it and goes back as soon as they are written, so
 * an idle session holds none; a bounded number of returned buffers are kept
 * for reuse, so the steady state allocates nothing per event.
 */
#ifndef SOCKS5D_BUFPOOL_H
#define SOCKS5D_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct bufpool_buf {
	struct bufpool_buf *next; /* free list link */
	size_t size;              /* bytes in data (the pool's size when made) */
	struct buf b;             /* positions over data */
	uint8_t data[];
};

/* Buffers of bufsize bytes from now on; at most max_cached returned ones are
 * kept, the rest freed. May be called again (reload): buffers in use keep
 * their size and are freed when returned. Without a call, 256 KiB buffers
 * and 64 cached. */
void bufpool_configure(size_t bufsize, size_t max_cached);
/* Frees the cached buffers (at exit, for leak checkers). */
void bufpool_drain(void);
size_t bufpool_bufsize(void);
/* An empty buffer of bufpool_bufsize() bytes, or NULL when out of memory. */
struct bufpool_buf *bufpool_get(void);
/* Gives a buffer back (its bytes are dropped). */
void bufpool_put(struct bufpool_buf *pb);

#endif
