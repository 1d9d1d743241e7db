/*
 * bufpool: a free list of equal-sized buffers on the loop's thread. A
 * buffer made before a reload changed the size is freed when it comes back,
 * never reused, so every cached buffer has the current size.
 */
#include "bufpool.h"

#include <stdlib.h>

static size_t pool_bufsize = (size_t)256 * 1024;
static size_t pool_max_cached = 64;
static size_t pool_ncached;
static struct bufpool_buf *pool_free;

void
bufpool_configure(size_t bufsize, size_t max_cached)
{
	bufpool_drain();
	pool_bufsize = bufsize;
	pool_max_cached = max_cached;
}

size_t
bufpool_bufsize(void)
{
	return pool_bufsize;
}

void
bufpool_drain(void)
{
	while (pool_free) {
		struct bufpool_buf *pb = pool_free;
		pool_free = pb->next;
		free(pb);
	}
	pool_ncached = 0;
}

struct bufpool_buf *
bufpool_get(void)
{
	struct bufpool_buf *pb = pool_free;

	if (pb) {
		pool_free = pb->next;
		pool_ncached--;
	} else {
		pb = malloc(sizeof(*pb) + pool_bufsize);
		if (!pb)
			return NULL;
	}
	pb->size = pool_bufsize;
	buf_init(&pb->b, pb->data, pool_bufsize);
	pb->next = NULL;
	return pb;
}

void
bufpool_put(struct bufpool_buf *pb)
{
	if (pool_ncached >= pool_max_cached || pb->size != pool_bufsize) {
		free(pb);
		return;
	}
	pb->next = pool_free;
	pool_free = pb;
	pool_ncached++;
}
