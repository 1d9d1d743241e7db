/*
 * relay: the data path of CONNECT and BIND sessions. One function moves one
 * direction (read into the direction's buffer or pipe, write it out);
 * interest masks follow from the two directions' states, and epoll_ctl runs
 * only when a mask really changes. Buffers come from bufpool and pipes
 * from pipepool, so the steady state allocates nothing per event.
 *
 * Why splice: on loopback, 1 MiB pipes moved bulk data at about 0.4 CPU-s
 * per GB against 0.6-0.7 for read/write through 256 KiB buffers, and let
 * 32 upload streams run at 0.8-1.0x the direct rate instead of 0.65x
 * (README "Performance"). A buffer and a pipe never hold bytes of the same
 * direction at once, so switching between them keeps the byte order.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "bufpool.h"
#include "log.h"

static bool splice_on = true;
static struct relay_stats stats;

void
relay_set_splice(bool on)
{
	splice_on = on;
}

void
relay_get_stats(struct relay_stats *out)
{
	*out = stats;
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

	if (!in->eof && !in->throttled &&
		(in->inpipe > 0 ? in->inpipe < in->pipe.cap && !in->pipe_full
				: !in->pb || buf_space(&in->pb->b) > 0))
		mask |= LOOP_READ;
	if ((out->pb && buf_len(&out->pb->b) > 0) || out->inpipe > 0)
		mask |= LOOP_WRITE;
	return mask;
}

static int
relay_update_interest(struct relay *r)
{
	for (int i = 0; i < 2; i++)
		if (loop_watch(r->loop, r->w[i], relay_mask(r, i)) < 0)
			return -1;
	return 0;
}

/* Whether the next read of dir goes into a pipe: always while its pipe
 * holds bytes, never while its buffer does, and otherwise for a bulk
 * direction that can get a pipe now. */
static bool
relay_reads_into_pipe(struct relay_dir *dir)
{
	if (dir->inpipe > 0)
		return true;
	if ((dir->pb && buf_len(&dir->pb->b) > 0) || !dir->bulk || !splice_on)
		return false;
	return dir->pipe.rd >= 0 || pipepool_get(&dir->pipe) == 0;
}

/* One read of at most cap bytes from src into the direction's pipe or
 * buffer. Returns bytes read (>0), 0 on EOF, -1 with errno (EAGAIN:
 * nothing there), or -2 when there is no room; *space is what was asked
 * for. */
static ssize_t
relay_read(struct relay_dir *dir, int src, size_t *space, size_t cap)
{
	ssize_t n;

	if (relay_reads_into_pipe(dir)) {
		*space = dir->pipe.cap - dir->inpipe;
		if (*space == 0)
			return -2;
		if (*space > cap)
			*space = cap;
		do {
			n = splice(src, NULL, dir->pipe.wr, NULL, *space,
				SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		} while (n < 0 && errno == EINTR);
		if (n > 0)
			dir->inpipe += (size_t)n;
		else if (n < 0 && errno == EAGAIN && dir->inpipe > 0)
			/* The pipe has 256 slots and each skb fragment takes
			 * one: it can be full short of its byte capacity (small
			 * segments), and level-triggered readiness would then
			 * spin. Stop reading until the other side drains. */
			dir->pipe_full = true;
		return n;
	}
	if (!dir->pb && !(dir->pb = bufpool_get())) {
		errno = ENOMEM;
		return -1;
	}
	*space = buf_space(&dir->pb->b);
	if (*space == 0)
		return -2;
	if (*space > cap)
		*space = cap;
	n = buf_fill_max(&dir->pb->b, src, cap);
	if (n >= (ssize_t)RELAY_BULK_READ || (n > 0 && (size_t)n == dir->pb->size))
		dir->bulk = true;
	return n;
}

/* Writes what the direction holds to dst; same returns as write(2), 0 when
 * there was nothing to write. */
static ssize_t
relay_write(struct relay_dir *dir, int dst)
{
	ssize_t n;

	if (dir->pb && buf_len(&dir->pb->b) > 0) {
		n = buf_drain(&dir->pb->b, dst);
		if (n > 0)
			stats.copied += (uint64_t)n;
	} else if (dir->inpipe > 0) {
		do {
			n = splice(dir->pipe.rd, NULL, dst, NULL, dir->inpipe,
				SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		} while (n < 0 && errno == EINTR);
		if (n > 0) {
			dir->inpipe -= (size_t)n;
			dir->pipe_full = false;
			stats.spliced += (uint64_t)n;
		}
	} else {
		return 0;
	}
	if (n > 0)
		dir->bytes += (uint64_t)n;
	return n;
}

/* Gives back what the direction holds no bytes in. */
static void
relay_release_empty(struct relay_dir *dir)
{
	if (dir->pb && buf_len(&dir->pb->b) == 0) {
		bufpool_put(dir->pb);
		dir->pb = NULL;
	}
	if (dir->pipe.rd >= 0 && dir->inpipe == 0)
		pipepool_put(&dir->pipe, true);
}

static bool
relay_dir_holds_bytes(const struct relay_dir *dir)
{
	return dir->inpipe > 0 || (dir->pb && buf_len(&dir->pb->b) > 0);
}

/* Once per direction, when it first reads a bulk amount. */
static void
relay_dir_turned_bulk(struct relay *r, int d)
{
	int lowat = RELAY_NOTSENT_LOWAT;

	r->dir[d].bulk_setup = true;
	/* Best effort: without it the transfer is only a little slower. */
	(void)setsockopt(r->w[1 - d]->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	if (!r->holds_pipepool) {
		pipepool_hold();
		r->holds_pipepool = true;
	}
}

/* Moves what it can in direction d (src w[d] -> dst w[1-d]). Returns 0, or
 * -1 with the relay finished. */
static int
relay_pump(struct relay *r, int d)
{
	struct relay_dir *dir = &r->dir[d];
	int src = r->w[d]->fd, dst = r->w[1 - d]->fd;

	/* A few rounds per event: a buffer that filled and drained at once is
	 * worth refilling, but one busy session must not starve the others. */
	for (int round = 0; round < 4; round++) {
		bool progress = false;
		size_t cap = SIZE_MAX;
		/* A metered direction asks first; told to wait, it stops
		 * reading until relay_resume (TCP backpressure). */
		if (r->throttle && !dir->eof && !dir->throttled &&
			(cap = r->throttle->allow(r->throttle, d, SIZE_MAX)) == 0)
			dir->throttled = true;
		if (!dir->eof && !dir->throttled) {
			size_t space = 0;
			ssize_t n = relay_read(dir, src, &space, cap);
			if (dir->bulk && !dir->bulk_setup)
				relay_dir_turned_bulk(r, d);
			if (n > 0 && r->throttle)
				r->throttle->charge(r->throttle, d, (size_t)n);
			if (n > 0) {
				/* A read that did not fill the space emptied the
				 * socket: another one now would only say EAGAIN. */
				progress = (size_t)n == space;
				r->last_active_ms = loop_now(r->loop);
			} else if (n == 0) {
				dir->eof = true;
			} else if (n == -1 && errno != EAGAIN) {
				relay_finish(r, errno == ENOMEM ? RELAY_END_NOMEM : RELAY_END_ERROR,
					errno);
				return -1;
			}
		}
		if (relay_dir_holds_bytes(dir)) {
			ssize_t n = relay_write(dir, dst);
			if (n > 0) {
				r->last_active_ms = loop_now(r->loop);
			} else if (n < 0 && errno != EAGAIN) {
				relay_finish(r, RELAY_END_ERROR, errno);
				return -1;
			}
		}
		relay_release_empty(dir);
		if (!progress || relay_dir_holds_bytes(dir))
			break;
	}
	if (dir->eof && !relay_dir_holds_bytes(dir) && !dir->shut) {
		/* Every byte before the FIN has been written: pass the FIN on.
		 * When the other direction is finished too, the close that
		 * follows sends it (both receive queues are drained: each saw
		 * EOF), so no shutdown call is needed for the last one. */
		dir->shut = true;
		if (!r->dir[1 - d].shut && shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
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

void
relay_set_throttle(struct relay *r, struct relay_throttle *t)
{
	r->throttle = t;
}

void
relay_resume(struct relay *r, int dir)
{
	if (r->stopped || !r->dir[dir].throttled)
		return;
	r->dir[dir].throttled = false;
	if (relay_update_interest(r) < 0)
		relay_finish(r, RELAY_END_ERROR, errno);
}

static void
relay_on_idle(struct loop *loop, void *arg)
{
	struct relay *r = arg;

	if (timer_idle_expired(loop, &r->idle_timer, r->last_active_ms, r->idle_ms))
		relay_finish(r, RELAY_END_IDLE, 0);
}

static int
relay_seed(struct relay_dir *dir, const uint8_t *p, size_t len)
{
	if (len == 0)
		return 0;
	if (!(dir->pb = bufpool_get()))
		return -1;
	if (buf_append(&dir->pb->b, p, len) < 0) {
		bufpool_put(dir->pb);
		dir->pb = NULL;
		errno = ENOBUFS;
		return -1;
	}
	return 0;
}

int
relay_start(struct relay *r, struct loop *loop, struct watcher *cw, struct watcher *tw,
	const uint8_t *up_initial, size_t up_len, const uint8_t *down_initial, size_t down_len,
	unsigned idle_ms, relay_done_cb done, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->loop = loop;
	r->done = done;
	r->arg = arg;
	r->idle_ms = idle_ms;
	r->last_active_ms = loop_now(loop);
	r->w[0] = cw;
	r->w[1] = tw;
	for (int i = 0; i < 2; i++)
		r->dir[i].pipe.rd = r->dir[i].pipe.wr = -1;
	timer_init(&r->idle_timer, relay_on_idle, r);
	if (relay_seed(&r->dir[RELAY_UP], up_initial, up_len) < 0 ||
		relay_seed(&r->dir[RELAY_DOWN], down_initial, down_len) < 0)
		goto fail;
	/* The sockets usually are in the epoll set already (handshake,
	 * connect) with these watchers: taking them over costs no syscall,
	 * and an unchanged interest none either (the client's usually is:
	 * reading). */
	watcher_set_callback(cw, relay_on_client, r);
	watcher_set_callback(tw, relay_on_target, r);
	if (relay_update_interest(r) < 0)
		goto fail;
	if (idle_ms)
		timer_start(loop, &r->idle_timer, idle_ms);
	return 0;
fail:
	r->stopped = true;
	for (int i = 0; i < 2; i++) {
		loop_unwatch(loop, r->w[i]);
		if (r->dir[i].pb) {
			bufpool_put(r->dir[i].pb);
			r->dir[i].pb = NULL;
		}
	}
	return -1;
}

/* The close of fd will send a RST instead of a FIN. */
static void
relay_abort_on_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void
relay_stop(struct relay *r)
{
	if (r->stopped)
		return;
	r->stopped = true;
	timer_stop(r->loop, &r->idle_timer);
	/* Bytes still held for a peer are lost with the close: it must get a
	 * reset, not a FIN that would make a cut stream look complete. */
	for (int i = 0; i < 2; i++)
		if (relay_dir_holds_bytes(&r->dir[i]))
			relay_abort_on_close(r->w[1 - i]->fd);
	for (int i = 0; i < 2; i++) {
		/* Closing removes the fd from the epoll set (never shared). */
		loop_unwatch_closing(r->loop, r->w[i]);
		close(r->w[i]->fd);
		r->w[i]->fd = -1;
		if (r->dir[i].pb) {
			bufpool_put(r->dir[i].pb);
			r->dir[i].pb = NULL;
		}
		pipepool_put(&r->dir[i].pipe, r->dir[i].inpipe == 0);
		r->dir[i].inpipe = 0;
	}
	/* After the puts: the last holder's release closes what they cached. */
	if (r->holds_pipepool) {
		r->holds_pipepool = false;
		pipepool_release();
	}
}

static void
relay_finish(struct relay *r, enum relay_end how, int err)
{
	if (how == RELAY_END_ERROR) {
		/* One side failed (reset, EPIPE): abort the other too, so a cut
		 * transfer does not look complete to it (a FIN would). */
		for (int i = 0; i < 2; i++)
			relay_abort_on_close(r->w[i]->fd);
	}
	relay_stop(r);
	r->done(how, err, r->arg);
}
