/*
 * relay: the data path of CONNECT and BIND sessions. One function moves one
 * direction (read into the direction's buffer, write it out); interest masks
 * follow from the two directions' states, and epoll_ctl runs only when a
 * mask really changes. Buffers come from a free list so the steady state
 * allocates nothing per event.
 */
#include "relay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

struct pool_buf {
	struct pool_buf *next; /* free list link */
	size_t size;           /* bytes in data (the pool's size when made) */
	struct buf b;
	uint8_t data[];
};

static size_t pool_bufsize = (size_t)256 * 1024;
static size_t pool_max_cached = 64;
static size_t pool_ncached;
static struct pool_buf *pool_free;

void
relay_pool_configure(size_t bufsize, size_t max_cached)
{
	relay_pool_drain();
	pool_bufsize = bufsize;
	pool_max_cached = max_cached;
}

size_t
relay_pool_bufsize(void)
{
	return pool_bufsize;
}

void
relay_pool_drain(void)
{
	while (pool_free) {
		struct pool_buf *pb = pool_free;
		pool_free = pb->next;
		free(pb);
	}
	pool_ncached = 0;
}

static struct pool_buf *
pool_get(void)
{
	struct pool_buf *pb = pool_free;

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

static void
pool_put(struct pool_buf *pb)
{
	/* A buffer of a size configured before a reload is not reused. */
	if (pool_ncached >= pool_max_cached || pb->size != pool_bufsize) {
		free(pb);
		return;
	}
	pb->next = pool_free;
	pool_free = pb;
	pool_ncached++;
}

static void relay_finish(struct relay *r, enum relay_end how, int err);

/* Interest of each fd follows from the directions: fd i is read for
 * direction i while it has not seen EOF and its buffer has room, and written
 * for the other direction while that one has bytes pending. */
static unsigned
relay_mask(const struct relay *r, int i)
{
	const struct relay_dir *in = &r->dir[i], *out = &r->dir[1 - i];
	unsigned mask = 0;

	if (!in->eof && (!in->pb || buf_space(&in->pb->b) > 0))
		mask |= LOOP_READ;
	if (out->pb && buf_len(&out->pb->b) > 0)
		mask |= LOOP_WRITE;
	return mask;
}

static int
relay_update_interest(struct relay *r)
{
	for (int i = 0; i < 2; i++)
		if (loop_watch(r->loop, &r->w[i], relay_mask(r, i)) < 0)
			return -1;
	return 0;
}

/* Moves what it can in direction d (src w[d] -> dst w[1-d]). Returns 0, or
 * -1 with the relay finished. */
static int
relay_pump(struct relay *r, int d)
{
	struct relay_dir *dir = &r->dir[d];
	int src = r->w[d].fd, dst = r->w[1 - d].fd;

	/* A few rounds per event: a buffer that filled and drained at once is
	 * worth refilling, but one busy session must not starve the others. */
	for (int round = 0; round < 4; round++) {
		bool progress = false;
		if (!dir->eof) {
			ssize_t n;
			if (!dir->pb && !(dir->pb = pool_get())) {
				relay_finish(r, RELAY_END_NOMEM, ENOMEM);
				return -1;
			}
			size_t space = buf_space(&dir->pb->b);
			n = space ? buf_fill(&dir->pb->b, src) : -2;
			if (n > 0) {
				/* A read that did not fill the space emptied the
				 * socket: another one now would only say EAGAIN. */
				progress = (size_t)n == space;
				r->last_active_ms = loop_now(r->loop);
			} else if (n == 0) {
				dir->eof = true;
			} else if (n == -1 && errno != EAGAIN) {
				relay_finish(r, RELAY_END_ERROR, errno);
				return -1;
			}
		}
		if (dir->pb && buf_len(&dir->pb->b) > 0) {
			ssize_t n = buf_drain(&dir->pb->b, dst);
			if (n > 0) {
				dir->bytes += (uint64_t)n;
				r->last_active_ms = loop_now(r->loop);
			} else if (n < 0 && errno != EAGAIN) {
				relay_finish(r, RELAY_END_ERROR, errno);
				return -1;
			}
		}
		if (dir->pb && buf_len(&dir->pb->b) == 0) {
			pool_put(dir->pb);
			dir->pb = NULL;
		}
		if (!progress || dir->pb)
			break;
	}
	if (dir->eof && !dir->pb && !dir->shut) {
		/* Every byte before the FIN has been written: pass the FIN on. */
		dir->shut = true;
		if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
			relay_finish(r, RELAY_END_ERROR, errno);
			return -1;
		}
	}
	if (r->dir[0].shut && r->dir[1].shut) {
		relay_finish(r, RELAY_END_DONE, 0);
		return -1;
	}
	return 0;
}

static void
relay_on_io(struct loop *loop, unsigned events, void *arg, int side)
{
	struct relay *r = arg;

	(void)loop;
	if ((events & LOOP_READ) && relay_pump(r, side) < 0)
		return;
	if ((events & LOOP_WRITE) && relay_pump(r, 1 - side) < 0)
		return;
	if (relay_update_interest(r) < 0)
		relay_finish(r, RELAY_END_ERROR, errno);
}

static void
relay_on_client(struct loop *loop, unsigned events, void *arg)
{
	relay_on_io(loop, events, arg, 0);
}

static void
relay_on_target(struct loop *loop, unsigned events, void *arg)
{
	relay_on_io(loop, events, arg, 1);
}

static void
relay_on_idle(struct loop *loop, void *arg)
{
	struct relay *r = arg;
	uint64_t idle_for = loop_now(loop) - r->last_active_ms;

	/* The timer is not re-armed per byte (that would be a heap operation per
	 * event); it checks the last activity and sleeps for the remainder. */
	if (idle_for >= r->idle_ms) {
		relay_finish(r, RELAY_END_IDLE, 0);
		return;
	}
	timer_start(loop, &r->idle_timer, r->idle_ms - idle_for);
}

static int
relay_seed(struct relay_dir *dir, const uint8_t *p, size_t len)
{
	if (len == 0)
		return 0;
	if (!(dir->pb = pool_get()))
		return -1;
	if (buf_append(&dir->pb->b, p, len) < 0) {
		pool_put(dir->pb);
		dir->pb = NULL;
		errno = ENOBUFS;
		return -1;
	}
	return 0;
}

int
relay_start(struct relay *r, struct loop *loop, struct watcher *cw, struct watcher *tw,
	const uint8_t *up_initial, size_t up_len,
	const uint8_t *down_initial, size_t down_len,
	unsigned idle_ms, relay_done_cb done, void *arg)
{
	struct watcher *prev[2] = { cw, tw };

	memset(r, 0, sizeof(*r));
	r->loop = loop;
	r->done = done;
	r->arg = arg;
	r->idle_ms = idle_ms;
	r->last_active_ms = loop_now(loop);
	watcher_init(&r->w[0], cw->fd, relay_on_client, r);
	watcher_init(&r->w[1], tw->fd, relay_on_target, r);
	timer_init(&r->idle_timer, relay_on_idle, r);
	if (relay_seed(&r->dir[RELAY_UP], up_initial, up_len) < 0 ||
	    relay_seed(&r->dir[RELAY_DOWN], down_initial, down_len) < 0)
		goto fail;
	/* The sockets usually are in the epoll set already (handshake,
	 * connect): re-point them at the relay's watchers in place. */
	for (int i = 0; i < 2; i++)
		if (loop_watch_transfer(loop, prev[i], &r->w[i], relay_mask(r, i)) < 0)
			goto fail;
	if (idle_ms)
		timer_start(loop, &r->idle_timer, idle_ms);
	r->running = true;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		loop_unwatch(loop, prev[i]);
		loop_unwatch(loop, &r->w[i]);
		if (r->dir[i].pb) {
			pool_put(r->dir[i].pb);
			r->dir[i].pb = NULL;
		}
	}
	return -1;
}

void
relay_stop(struct relay *r)
{
	if (!r->running)
		return;
	r->running = false;
	timer_stop(r->loop, &r->idle_timer);
	for (int i = 0; i < 2; i++) {
		/* Closing removes the fd from the epoll set (never shared). */
		loop_unwatch_closing(r->loop, &r->w[i]);
		close(r->w[i].fd);
		r->w[i].fd = -1;
		if (r->dir[i].pb) {
			pool_put(r->dir[i].pb);
			r->dir[i].pb = NULL;
		}
	}
}

static void
relay_finish(struct relay *r, enum relay_end how, int err)
{
	if (how == RELAY_END_ERROR) {
		/* One side failed (reset, EPIPE): abort the other too, so a cut
		 * transfer does not look complete to it (a FIN would). */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		for (int i = 0; i < 2; i++)
			(void)setsockopt(r->w[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	relay_stop(r);
	r->done(how, err, r->arg);
}
