/*
 * test_relay: the relay (relay.c) and its splice pipes (pipepool.c) between
 * real loopback TCP connections in a real loop. The test holds the far end
 * of both connections (the "client end" and the "target end"), writes
 * deterministic pseudo-random streams into them and checks the byte count
 * and FNV-1a hash of what comes out at the other side. It shows that bulk
 * data arrives intact and in order whether it is spliced, copied (splice
 * off, or a pool that refuses every pipe) or switched between the two
 * mid-stream (one pipe shared by two directions; splicing turned off while
 * a pipe holds bytes); that initial bytes go out first; that a FIN is passed
 * on per direction while the other keeps flowing, and done runs once; that
 * a small exchange never takes a pipe; that a pipe full of small segments
 * (out of slots long before bytes) does not make the loop spin; and that
 * every pipe is back in the pool when a relay ends or is stopped.
 * Contention is arranged, not hoped for: on loopback a pipe is usually
 * empty again within one event, so a test that needs a pipe held stops
 * reading at one end (start_and_stall).
 * Every wait is bounded by GUARD_MS of wall time and an iteration count
 * (unit_util.h), so a stall fails the test instead of hanging it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bufpool.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "pipepool.h"
#include "relay.h"

#include "unit_util.h"

#define GUARD_MS 10000
#define BULK_BYTES ((uint64_t)8 << 20)
#define CHUNK (64 * 1024) /* stream bytes generated at a time */

/* A deterministic byte stream, written into one of the test's sockets. */
struct src {
	uint64_t total; /* bytes in the stream */
	uint64_t made;  /* bytes generated (and hashed) so far */
	uint64_t rng;   /* xorshift64 state */
	uint64_t hash;  /* FNV-1a 64 of the bytes generated */
	uint8_t chunk[CHUNK];
	size_t off, len; /* chunk[off..len) is generated but not yet sent */
};

/* What one of the test's sockets received. */
struct sink {
	uint64_t count;
	uint64_t hash; /* FNV-1a 64 of the bytes received */
	bool eof;
};

/* One of the test's own ends of a relayed connection. */
struct end {
	int fd;
	struct src out;
	struct sink in;
	uint64_t send_limit; /* out is sent up to here, then paused */
	bool hold_in;        /* reading paused: backpressure towards the relay */
	bool shut_when_sent; /* shutdown(SHUT_WR) once out is all sent ... */
	bool shut_after_eof; /* ... and in has seen EOF (a reply after a request) */
	bool shut;           /* SHUT_WR done */
};

struct fx {
	struct loop *loop;
	struct relay relay;
	int relay_fd[2];       /* the relay's client and target fds; its own after start */
	bool started;          /* relay_start succeeded: relay_fd are not ours to close */
	struct watcher cw, tw; /* handed to the relay: they must outlive it */
	struct end cl, tg;     /* the test's client end and target end */
	unsigned ndone;        /* done calls */
	enum relay_end how;
	int err;
	struct relay_stats rs0; /* at relay start, for deltas */
	struct pipepool_stats ps0;
	size_t peak_in_use; /* most pipes out at once, sampled between iterations */
	int stall;          /* the direction start_and_stall stalls */
};

/* --- streams --------------------------------------------------------------- */

static void
src_init(struct src *s, uint64_t total, uint64_t seed)
{
	s->total = total;
	s->made = 0;
	s->rng = seed | 1; /* xorshift never leaves 0 */
	s->hash = UNIT_FNV_OFFSET;
	s->off = s->len = 0;
}

static uint64_t
src_sent(const struct src *s)
{
	return s->made - (s->len - s->off);
}

static bool
src_done(const struct src *s)
{
	return src_sent(s) == s->total;
}

/* Makes the next piece of the stream. It is hashed here, before it is sent,
 * so a receiver's equal hash means every byte arrived once and in order. */
static void
src_refill(struct src *s)
{
	uint64_t left = s->total - s->made;
	size_t n = left < CHUNK ? (size_t)left : CHUNK;

	for (size_t i = 0; i < n; i += 8) {
		s->rng ^= s->rng << 13;
		s->rng ^= s->rng >> 7;
		s->rng ^= s->rng << 17;
		for (size_t k = 0; k < 8 && i + k < n; k++)
			s->chunk[i + k] = (uint8_t)(s->rng >> (8 * k));
	}
	s->hash = unit_fnv(s->hash, s->chunk, n);
	s->made += n;
	s->off = 0;
	s->len = n;
}

static void
end_send(struct end *e, uint64_t total, uint64_t seed, bool shut_when_sent)
{
	src_init(&e->out, total, seed);
	e->send_limit = total;
	e->shut_when_sent = shut_when_sent;
}

/* Sends and receives what the socket takes and has now, never blocking. */
static void
end_pump(struct end *e)
{
	static uint8_t rx[256 * 1024];
	ssize_t n;

	while (src_sent(&e->out) < e->send_limit) {
		uint64_t room = e->send_limit - src_sent(&e->out);
		size_t len;
		if (e->out.off == e->out.len)
			src_refill(&e->out);
		len = e->out.len - e->out.off;
		if (len > room)
			len = (size_t)room;
		n = send(e->fd, e->out.chunk + e->out.off, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fail_msg("send: %s", strerror(errno));
			break;
		}
		e->out.off += (size_t)n;
	}
	if (e->shut_when_sent && !e->shut && src_done(&e->out) &&
		(!e->shut_after_eof || e->in.eof)) {
		assert_int_equal(shutdown(e->fd, SHUT_WR), 0);
		e->shut = true;
	}
	while (!e->hold_in && !e->in.eof) {
		n = recv(e->fd, rx, sizeof(rx), 0);
		if (n < 0) {
			/* A reset here is the relay aborting: a failure, not a wait. */
			if (errno != EAGAIN && errno != EINTR)
				fail_msg("recv: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			e->in.eof = true;
			break;
		}
		e->in.hash = unit_fnv(e->in.hash, rx, (size_t)n);
		e->in.count += (uint64_t)n;
	}
}

/* Everything s sent so far arrived at k, once and in order. The hash covers
 * whole generated chunks, so this holds at a chunk boundary only. */
static void
assert_delivered_so_far(const struct src *s, const struct sink *k)
{
	assert_int_equal(s->off, s->len);
	assert_int_equal(k->count, s->made);
	assert_int_equal(k->hash, s->hash);
}

static void
assert_delivered(const struct src *s, const struct sink *k)
{
	assert_true(src_done(s));
	assert_delivered_so_far(s, k);
}

/* --- loop and relay ------------------------------------------------------- */

/* What run_until waits for. */
struct wait {
	struct fx *f;
	bool (*pred)(const struct fx *);
};

/* Between two loop iterations: samples the pipes out, runs the test's
 * ends, asks the predicate. */
static bool
pumped_pred(void *arg)
{
	struct wait *w = arg;
	struct pipepool_stats ps;

	pipepool_get_stats(&ps);
	if (ps.in_use > w->f->peak_in_use)
		w->f->peak_in_use = ps.in_use;
	end_pump(&w->f->cl);
	end_pump(&w->f->tg);
	return w->pred(w->f);
}

/* Runs the test's ends and the loop until pred holds (true), or until
 * GUARD_MS or the iteration bound run out (false). The loop waits 1 ms at
 * most: the test's own sockets are not in it. */
static bool
run_until(struct fx *f, bool (*pred)(const struct fx *))
{
	struct wait w = { f, pred };

	return unit_run_until(f->loop, pumped_pred, &w, GUARD_MS);
}

static bool
pred_all_ended(const struct fx *f)
{
	return f->ndone > 0 && f->cl.in.eof && f->tg.in.eof;
}

static bool
pred_target_eof(const struct fx *f)
{
	return f->tg.in.eof;
}

static bool
pred_target_got_64(const struct fx *f)
{
	return f->tg.in.count >= 64;
}

static bool
pred_client_got_64(const struct fx *f)
{
	return f->cl.in.count >= 64;
}

/* Both FINs passed on, both ends saw EOF, done ran once and said so. */
static void
run_to_end(struct fx *f)
{
	if (!run_until(f, pred_all_ended))
		fail_msg("relay did not finish: up %llu of %llu, down %llu of %llu, done %u",
			(unsigned long long)f->tg.in.count, (unsigned long long)f->cl.out.total,
			(unsigned long long)f->cl.in.count, (unsigned long long)f->tg.out.total,
			f->ndone);
	assert_int_equal(f->ndone, 1);
	assert_int_equal(f->how, RELAY_END_DONE);
	assert_int_equal(f->err, 0);
}

static void
on_done(enum relay_end how, int err, void *arg)
{
	struct fx *f = arg;

	f->ndone++;
	f->how = how;
	f->err = err;
}

static void
start_relay(struct fx *f, const uint8_t *up_initial, size_t up_len)
{
	int rc;

	relay_get_stats(&f->rs0);
	pipepool_get_stats(&f->ps0);
	assert_int_equal(f->ps0.in_use, 0);
	/* Unregistered watchers are allowed: the relay registers the fds. A
	 * test may have registered them already (as the handshake does). */
	if (!f->cw.registered)
		watcher_init(&f->cw, f->relay_fd[0], NULL, NULL);
	if (!f->tw.registered)
		watcher_init(&f->tw, f->relay_fd[1], NULL, NULL);
	rc = relay_start(&f->relay, f->loop, &f->cw, &f->tw, up_initial, up_len, NULL, 0, 0,
		on_done, f);
	assert_int_equal(rc, 0);
	f->started = true;
}

static void
stats_delta(const struct fx *f, uint64_t *spliced, uint64_t *copied)
{
	struct relay_stats now;

	relay_get_stats(&now);
	*spliced = now.spliced - f->rs0.spliced;
	*copied = now.copied - f->rs0.copied;
}

static void
assert_no_pipe_out(void)
{
	struct pipepool_stats ps;

	pipepool_get_stats(&ps);
	assert_int_equal(ps.in_use, 0);
}

/* A connected loopback TCP pair, both ends nonblocking: *a connected, *b
 * accepted. */
static void
tcp_pair(int *a, int *b)
{
	union sockaddr_any addr, peer;
	int lfd;

	assert_int_equal(addr_parse("127.0.0.1", 0, &addr), 0);
	lfd = net_listen_tcp(&addr, 1);
	assert_true(lfd >= 0);
	assert_int_equal(net_local_addr(lfd, &addr), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*a >= 0);
	/* A blocking connect: on loopback the handshake is complete when it
	 * returns, so the nonblocking listener has the connection queued. */
	assert_int_equal(connect(*a, &addr.sa, addr_len(&addr)), 0);
	*b = net_accept(lfd, &peer);
	close(lfd);
	assert_true(*b >= 0);
	assert_int_equal(fcntl(*a, F_SETFL, fcntl(*a, F_GETFL) | O_NONBLOCK), 0);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	log_init(getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	f->relay_fd[0] = f->relay_fd[1] = f->cl.fd = f->tg.fd = -1;
	f->cl.in.hash = f->tg.in.hash = UNIT_FNV_OFFSET;
	f->loop = loop_new();
	assert_non_null(f->loop);
	tcp_pair(&f->cl.fd, &f->relay_fd[0]);
	tcp_pair(&f->relay_fd[1], &f->tg.fd);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	/* A test that failed half-way leaves the relay running. */
	if (f->started)
		relay_stop(&f->relay);
	for (int i = 0; i < 2; i++)
		if (!f->started && f->relay_fd[i] >= 0)
			close(f->relay_fd[i]);
	if (f->cl.fd >= 0)
		close(f->cl.fd);
	if (f->tg.fd >= 0)
		close(f->tg.fd);
	loop_free(f->loop);
	free(f);
	relay_set_splice(true);
	pipepool_configure(RELAY_PIPE_SIZE, RELAY_MAX_PIPES, RELAY_CACHED_PIPES);
	bufpool_configure((size_t)256 * 1024, 64);
	/* Cached buffers and pipes would look like leaks to ASan and valgrind. */
	bufpool_drain();
	pipepool_trim();
	return 0;
}

/* The client end uploads total bytes and shuts down; the target end only
 * shuts down after it has seen the EOF, as a server answering at the end
 * of a request would. */
static void
upload(struct fx *f, uint64_t total)
{
	end_send(&f->cl, total, 0x9e3779b97f4a7c15ULL, true);
	end_send(&f->tg, 0, 1, true);
	f->tg.shut_after_eof = true;
}

/* --- tests ------------------------------------------------------------------ */

static void
test_bulk_upload_is_spliced_and_returns_every_pipe(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied;

	pipepool_configure((size_t)1 << 20, 64, 8);
	upload(f, BULK_BYTES);
	start_relay(f, NULL, 0);
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_int_equal(f->relay.dir[RELAY_UP].bytes, BULK_BYTES);
	assert_true(f->relay.dir[RELAY_UP].bulk);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced + copied, BULK_BYTES);
	/* Only the reads before the direction turned bulk may be copied. */
	assert_true(spliced > BULK_BYTES / 2);
	assert_no_pipe_out();
}

static void
test_bulk_upload_without_splice_is_copied(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied;

	relay_set_splice(false);
	upload(f, BULK_BYTES);
	start_relay(f, NULL, 0);
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced, 0);
	assert_int_equal(copied, BULK_BYTES);
	assert_int_equal(f->peak_in_use, 0);
	assert_no_pipe_out();
}

static void
test_bulk_upload_copies_when_pool_refuses_every_pipe(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied;
	struct pipepool_stats ps;

	pipepool_configure((size_t)1 << 20, 0, 0);
	upload(f, BULK_BYTES);
	start_relay(f, NULL, 0);
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced, 0);
	assert_int_equal(copied, BULK_BYTES);
	/* It did ask: the direction was bulk and was told no. */
	assert_true(f->relay.dir[RELAY_UP].bulk);
	pipepool_get_stats(&ps);
	assert_true(ps.refused > f->ps0.refused);
	assert_int_equal(ps.in_use, 0);
}

/* Starts the relay and stalls direction d with its pipe at least half full:
 * the receiving end reads until d is on a pipe (a bulk direction takes one
 * only when its buffer is empty), then stops reading. Small, fixed socket
 * buffers on that side make the stall certain. */
static bool
pred_stall_in_pipe(const struct fx *f)
{
	return f->relay.dir[f->stall].inpipe > 0;
}

static bool
pred_stall_half_full(const struct fx *f)
{
	const struct relay_dir *d = &f->relay.dir[f->stall];

	return d->inpipe >= d->pipe.cap / 2;
}

/* Small, fixed socket buffers between the relay and the end receiving
 * direction d, so that once that end stops reading the relay's writes stop
 * soon. Set before the relay starts (a window once offered is not taken
 * back). */
static void
small_buffers_towards(struct fx *f, int d)
{
	struct end *rx = d == RELAY_UP ? &f->tg : &f->cl;
	int small = 32 * 1024, fd = f->relay_fd[1 - d];

	assert_int_equal(setsockopt(rx->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
}

static void
start_and_stall(struct fx *f, int d)
{
	struct end *rx = d == RELAY_UP ? &f->tg : &f->cl;

	small_buffers_towards(f, d);
	start_relay(f, NULL, 0);
	f->stall = d;
	assert_true(run_until(f, pred_stall_in_pipe));
	rx->hold_in = true;
	assert_true(run_until(f, pred_stall_half_full));
}

#define UPLOAD_FIRST ((uint64_t)2 << 20) /* uploaded before a pause; CHUNK multiple */

static bool
pred_target_got_first(const struct fx *f)
{
	return f->tg.in.count == UPLOAD_FIRST;
}

static bool
pred_client_eof(const struct fx *f)
{
	return f->cl.in.eof;
}

/* With no descriptor left, a pipe cannot be made: the transfer copies,
 * and the pool does not try again (pipe2, fcntl, closes) on every read. */
static void
test_no_fd_for_a_pipe_copies_and_tries_once(void **state)
{
	struct fx *f = *state;
	static int filler[4096];
	size_t nfill = 0;
	struct rlimit saved, low;
	uint64_t spliced, copied;
	struct pipepool_stats ps;

	upload(f, BULK_BYTES);
	start_relay(f, NULL, 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	if (low.rlim_cur > 4096)
		low.rlim_cur = 4096;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (nfill < sizeof(filler) / sizeof(filler[0])) {
		int fd = dup(0);
		if (fd < 0)
			break;
		filler[nfill++] = fd;
	}
	run_to_end(f);
	while (nfill > 0)
		close(filler[--nfill]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_delivered(&f->cl.out, &f->tg.in);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced, 0);
	assert_int_equal(copied, BULK_BYTES);
	pipepool_get_stats(&ps);
	assert_true(ps.refused - f->ps0.refused > 1);
	assert_int_equal(ps.make_failed - f->ps0.make_failed, 1);
}

static void
test_bidirectional_bulk_switches_between_pipe_and_buffer(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied, spliced_before;
	struct pipepool_stats ps;

	/* One pipe for two bulk directions. Left to itself on loopback the
	 * pipe is empty again after every event and both directions splice in
	 * turn, so the test arranges the contention: the download stalls
	 * holding the pipe while the upload runs (it must copy), then the
	 * download ends and the same upload must take the pipe. */
	pipepool_configure((size_t)1 << 20, 1, 1);
	end_send(&f->tg, BULK_BYTES, 0xfedcba9876543210ULL, true);
	end_send(&f->cl, BULK_BYTES, 0x0123456789abcdefULL, true);
	f->cl.send_limit = 0;
	start_and_stall(f, RELAY_DOWN);

	/* The download cannot drain its pipe while the client end reads
	 * nothing: every upload read is refused a pipe and copied. */
	f->cl.send_limit = UPLOAD_FIRST;
	assert_true(run_until(f, pred_target_got_first));
	assert_true(f->relay.dir[RELAY_UP].bulk);
	pipepool_get_stats(&ps);
	assert_true(ps.refused > f->ps0.refused);
	stats_delta(f, &spliced, &copied);
	assert_true(copied >= UPLOAD_FIRST);

	/* The download finishes while the upload waits; then the upload,
	 * copied until now, gets the pipe for all of its rest. */
	f->cl.hold_in = false;
	assert_true(run_until(f, pred_client_eof));
	assert_delivered(&f->tg.out, &f->cl.in);
	stats_delta(f, &spliced_before, &copied);
	f->cl.send_limit = BULK_BYTES;
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced - spliced_before, BULK_BYTES - UPLOAD_FIRST);
	assert_int_equal(spliced + copied, 2 * BULK_BYTES);
	assert_true(f->peak_in_use <= 1);
	assert_no_pipe_out();
}

static void
test_splice_turned_off_mid_stream_keeps_order(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied, spliced_at, copied_at;

	/* A reload turns splicing off while the upload has a pipe full of
	 * bytes and more wait in the socket: the pipe's bytes must go out
	 * before anything is read into a buffer. */
	upload(f, BULK_BYTES);
	f->cl.send_limit = UPLOAD_FIRST;
	start_and_stall(f, RELAY_UP);
	relay_set_splice(false);
	f->tg.hold_in = false;
	assert_true(run_until(f, pred_target_got_first));
	assert_delivered_so_far(&f->cl.out, &f->tg.in);
	/* Drained, the pipe went back; the rest is copied. */
	assert_no_pipe_out();
	stats_delta(f, &spliced_at, &copied_at);
	f->cl.send_limit = BULK_BYTES;
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced, spliced_at);
	assert_int_equal(copied - copied_at, BULK_BYTES - UPLOAD_FIRST);
}

/* Reads fd (the test's end) until it fails: the stream must end in a reset,
 * not EOF, since bytes meant for it were dropped. Bounded by GUARD_MS. */
static void
expect_reset_after_data(int fd)
{
	static uint8_t scratch[65536];
	uint64_t deadline = unit_wall_ms() + GUARD_MS;

	for (;;) {
		ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
		if (n > 0)
			continue;
		if (n == 0)
			fail_msg("the stream was cut with bytes held, but ended with a FIN");
		if (errno == ECONNRESET)
			return;
		if (errno != EAGAIN && errno != EINTR)
			fail_msg("recv: %s, want ECONNRESET", strerror(errno));
		if (unit_wall_ms() >= deadline)
			fail_msg("no reset within %d ms", GUARD_MS);
		(void)poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 10);
	}
}

static void
test_stop_with_bytes_in_a_pipe_returns_it_and_resets_the_peer(void **state)
{
	struct fx *f = *state;
	struct pipepool_stats ps;

	upload(f, BULK_BYTES);
	start_and_stall(f, RELAY_UP);
	relay_stop(&f->relay);
	/* Back in the pool's count, but not cached: its bytes are stale. */
	pipepool_get_stats(&ps);
	assert_int_equal(ps.in_use, 0);
	assert_int_equal(ps.cached, f->ps0.cached);
	assert_int_equal(f->ndone, 0);
	assert_true(f->relay.stopped);
	expect_reset_after_data(f->tg.fd);
}

/* Bytes waiting in fd's receive queue. */
static size_t
unread_bytes(int fd)
{
	int n = 0;

	assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
	return (size_t)n;
}

static uint64_t
cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#define SMALL_SEG 100                 /* bytes per send() while the target end holds */
#define SMALL_SEGS_MAX 20000          /* sends allowed to fill the pipe */
#define SMALL_BACKLOG (5 * SMALL_SEG) /* unread at the relay: it reads no more */
#define SETTLE_MS 200                 /* nothing moved this long: the target end is stalled */
#define QUIET_MS 300                  /* window in which the loop's iterations are counted */
#define QUIET_WAIT_MS 10              /* each iteration's wait: an idle loop makes <= 31 */
#define QUIET_MAX_ITER 100            /* a spinning one makes 10^4-10^5 */

/* The client end sends one small segment per loop iteration until some
 * wait unread at the relay, then the loop runs SETTLE_MS; again until
 * nothing moved in that time (a delayed ACK from the target end can still
 * make room after the first stop). */
static void
fill_pipe_with_small_segments(struct fx *f)
{
	const struct relay_dir *up = &f->relay.dir[RELAY_UP];
	int src = f->relay.w[RELAY_UP]->fd;
	uint64_t deadline = unit_wall_ms() + GUARD_MS, moved;
	unsigned nseg = 0, rounds = 0;

	do {
		while (unread_bytes(src) < SMALL_BACKLOG) {
			if (nseg++ == SMALL_SEGS_MAX || unit_wall_ms() > deadline)
				fail_msg("no stall after %u segments: %zu in the pipe, %zu unread",
					nseg, up->inpipe, unread_bytes(src));
			f->cl.send_limit += SMALL_SEG;
			end_pump(&f->cl);
			assert_int_equal(loop_run_once(f->loop, 0), 0);
		}
		moved = up->bytes;
		unit_run_for(f->loop, SETTLE_MS, QUIET_WAIT_MS);
		rounds++;
		if (unit_wall_ms() > deadline)
			fail_msg("still moving after %u rounds: %zu in the pipe, %zu unread",
				rounds, up->inpipe, unread_bytes(src));
	} while (up->bytes != moved || unread_bytes(src) < SMALL_BACKLOG);
	log_debug("%u segments of %u bytes, %u rounds: %zu in the pipe (cap %zu), %zu unread", nseg,
		SMALL_SEG, rounds, up->inpipe, up->pipe.cap, unread_bytes(src));
}

static void
test_pipe_full_of_small_segments_does_not_spin(void **state)
{
	struct fx *f = *state;
	const struct relay_dir *up = &f->relay.dir[RELAY_UP];
	int one = 1, src;
	unsigned iter;
	size_t inpipe, backlog;
	uint64_t bytes, cpu0, cpu;

	/* Regression: a pipe has a slot per page of its size (256) and each
	 * skb spliced in takes at least one, so small segments fill it (splice
	 * says EAGAIN) with a few KiB in it. Read interest was kept while
	 * inpipe < cap, and level-triggered epoll woke the loop for the
	 * readable source again and again, nothing moving, until the
	 * destination drained. */
	upload(f, UPLOAD_FIRST + ((uint64_t)4 << 20));
	f->cl.send_limit = UPLOAD_FIRST;
	small_buffers_towards(f, RELAY_UP);
	start_relay(f, NULL, 0);
	src = f->relay.w[RELAY_UP]->fd;
	assert_true(run_until(f, pred_target_got_first));
	assert_true(up->bulk);
	assert_int_equal(up->inpipe, 0);

	/* The target end stops reading; the client end sends small segments
	 * (no Nagle, one per iteration: each is its own skb and is spliced on
	 * its own) until the pipe is full by slots: bytes wait unread at the
	 * relay while the pipe holds a small part of its capacity. */
	f->tg.hold_in = true;
	assert_int_equal(setsockopt(f->cl.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	fill_pipe_with_small_segments(f);
	inpipe = up->inpipe;
	backlog = unread_bytes(src);
	assert_true(inpipe > 0);
	assert_true(inpipe < up->pipe.cap / 8);

	/* The source stays readable and nothing can move: the loop must sleep
	 * through its waits, not wake for the source again and again. Counted
	 * in iterations, not CPU time: a slow machine makes fewer, never more. */
	bytes = up->bytes;
	cpu0 = cpu_us();
	iter = unit_run_for(f->loop, QUIET_MS, QUIET_WAIT_MS);
	cpu = cpu_us() - cpu0;
	log_debug("pipe full: %u iterations in %u ms, %llu us CPU", iter, QUIET_MS,
		(unsigned long long)cpu);
	if (iter >= QUIET_MAX_ITER)
		fail_msg("loop spins with the pipe full: %u iterations in %u ms (%llu us CPU)",
			iter, QUIET_MS, (unsigned long long)cpu);
	assert_int_equal(up->bytes, bytes);
	assert_int_equal(up->inpipe, inpipe);
	assert_true(unread_bytes(src) >= backlog);

	/* Unblocked, the whole stream arrives in order. */
	f->tg.hold_in = false;
	f->cl.send_limit = f->cl.out.total;
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_no_pipe_out();
}

static void
test_initial_bytes_go_first(void **state)
{
	struct fx *f = *state;
	uint8_t initial[300];
	uint64_t spliced, copied;

	/* The stream's first 300 bytes reach the relay as already-read
	 * payload (pipelined after the request); the rest comes through the
	 * socket. The hash covers the whole, so order is checked too. */
	upload(f, sizeof(initial) + ((uint64_t)4 << 20));
	src_refill(&f->cl.out);
	memcpy(initial, f->cl.out.chunk, sizeof(initial));
	f->cl.out.off = sizeof(initial);
	start_relay(f, initial, sizeof(initial));
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_int_equal(f->relay.dir[RELAY_UP].bytes, f->cl.out.total);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced + copied, f->cl.out.total);
	assert_true(spliced > 0);
	assert_no_pipe_out();
}

static void
test_half_close_in_bulk_mode_keeps_other_direction(void **state)
{
	struct fx *f = *state;

	/* The client end sends 4 MB and its FIN; the target end answers only
	 * after reading all of it (RFC 793 §3.5: a closed direction leaves the
	 * other one open). */
	end_send(&f->cl, (uint64_t)4 << 20, 0x5555aaaa5555aaaaULL, true);
	start_relay(f, NULL, 0);
	assert_true(run_until(f, pred_target_eof));
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_true(f->relay.dir[RELAY_UP].bulk);
	assert_true(f->relay.dir[RELAY_UP].shut);
	assert_false(f->relay.dir[RELAY_DOWN].shut);
	assert_int_equal(f->ndone, 0);
	assert_false(f->cl.in.eof);

	end_send(&f->tg, 100 * 1000, 0x1234123412341234ULL, true);
	run_to_end(f);
	assert_delivered(&f->tg.out, &f->cl.in);
	/* Finished is finished: nothing calls done again. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(loop_run_once(f->loop, 1), 0);
	assert_int_equal(f->ndone, 1);
	assert_no_pipe_out();
}

/* After the client end's 64 bytes: the target end answers 64 bytes and its
 * FIN once it has them, the client end sends its FIN once answered; both
 * streams must arrive whole. */
static void
finish_64_byte_exchange(struct fx *f, uint64_t answer_seed)
{
	assert_true(run_until(f, pred_target_got_64));
	end_send(&f->tg, 64, answer_seed, true);
	f->tg.shut_after_eof = true;
	assert_true(run_until(f, pred_client_got_64));
	f->cl.shut_when_sent = true;
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_delivered(&f->tg.out, &f->cl.in);
}

static void
test_small_exchange_never_takes_a_pipe(void **state)
{
	struct fx *f = *state;
	uint64_t spliced, copied;

	/* Request, reply, then both FINs: 64 bytes each way, far below
	 * RELAY_BULK_READ and the buffer size. */
	end_send(&f->cl, 64, 0x6464646464646464ULL, false);
	start_relay(f, NULL, 0);
	finish_64_byte_exchange(f, 0x4646464646464646ULL);
	assert_false(f->relay.dir[RELAY_UP].bulk);
	assert_false(f->relay.dir[RELAY_DOWN].bulk);
	stats_delta(f, &spliced, &copied);
	assert_int_equal(spliced, 0);
	assert_int_equal(copied, 128);
	assert_int_equal(f->peak_in_use, 0);
	assert_no_pipe_out();
}

static unsigned handshake_calls;

static void
on_handshake_io(struct loop *loop, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	(void)arg;
	handshake_calls++;
}

static void
test_registered_watchers_are_taken_over_in_place(void **state)
{
	struct fx *f = *state;

	/* As after a CONNECT: the client fd registered for reading and the
	 * target fd for writing (its connect), both with the handshake's
	 * callback. Events must reach the relay from the start, and the
	 * watchers, still registered, keep the relay's interest. */
	handshake_calls = 0;
	watcher_init(&f->cw, f->relay_fd[0], on_handshake_io, NULL);
	watcher_init(&f->tw, f->relay_fd[1], on_handshake_io, NULL);
	assert_int_equal(loop_watch(f->loop, &f->cw, LOOP_READ), 0);
	assert_int_equal(loop_watch(f->loop, &f->tw, LOOP_WRITE), 0);
	end_send(&f->cl, 64, 0x0123456789abcdefULL, false);
	start_relay(f, NULL, 0);
	assert_true(f->cw.registered && f->tw.registered);
	assert_int_equal(f->cw.mask, LOOP_READ);
	assert_int_equal(f->tw.mask, LOOP_READ);
	finish_64_byte_exchange(f, 0xfedcba9876543210ULL);
	assert_int_equal(handshake_calls, 0);
	assert_no_pipe_out();
}

/* --- a metered relay (issue 18) --------------------------------------------- */

/* A meter that grants bytes by hand: allow gives at most what is left of
 * the grant, and 0 (a wait) when nothing is. */
struct meter {
	struct relay_throttle t; /* first: the relay passes it back */
	uint64_t left[2];        /* bytes still granted per direction */
	uint64_t charged[2];
	size_t biggest; /* the largest single charge */
	unsigned waits[2];
};

static size_t
meter_allow(struct relay_throttle *t, int dir, size_t want)
{
	struct meter *m = (struct meter *)t;

	if (m->left[dir] == 0) {
		m->waits[dir]++;
		return 0;
	}
	return want < m->left[dir] ? want : (size_t)m->left[dir];
}

static void
meter_charge(struct relay_throttle *t, int dir, size_t n)
{
	struct meter *m = (struct meter *)t;

	assert_true(n <= m->left[dir]);
	m->left[dir] -= n;
	m->charged[dir] += n;
	if (n > m->biggest)
		m->biggest = n;
}

static struct meter test_meter;

static bool
pred_meter_waits_up(const struct fx *f)
{
	return (test_meter.waits[RELAY_UP] > 0 || f->tg.in.eof) &&
		f->tg.in.count == test_meter.charged[RELAY_UP];
}

/* A metered direction reads no more than it is granted, splices no more
 * than that at once, stops reading (without spinning) when told to wait
 * although the client has more queued, and goes on after relay_resume;
 * every byte still arrives in order. */
static void
test_metered_direction_reads_only_its_grant(void **state)
{
	struct fx *f = *state;
	const uint64_t total = (uint64_t)4 << 20, grant = 300000;
	uint64_t spliced, copied;
	unsigned iters;

	memset(&test_meter, 0, sizeof(test_meter));
	test_meter.t.allow = meter_allow;
	test_meter.t.charge = meter_charge;
	test_meter.left[RELAY_UP] = grant;
	test_meter.left[RELAY_DOWN] = UINT64_MAX;
	upload(f, total);
	start_relay(f, NULL, 0);
	relay_set_throttle(&f->relay, &test_meter.t);
	while (test_meter.charged[RELAY_UP] < total) {
		if (!run_until(f, pred_meter_waits_up))
			fail_msg("no wait after %llu bytes",
				(unsigned long long)test_meter.charged[RELAY_UP]);
		if (f->tg.in.eof)
			break;
		/* Waiting: the client's bytes stay where they are. */
		iters = unit_run_for(f->loop, 30, 5);
		assert_true(iters < 60);
		assert_true(f->tg.in.count == test_meter.charged[RELAY_UP]);
		assert_true(test_meter.charged[RELAY_UP] % grant == 0 ||
			test_meter.charged[RELAY_UP] == total);
		test_meter.waits[RELAY_UP] = 0;
		test_meter.left[RELAY_UP] = grant;
		relay_resume(&f->relay, RELAY_UP);
		if (test_meter.charged[RELAY_UP] == total)
			break;
	}
	run_to_end(f);
	assert_delivered(&f->cl.out, &f->tg.in);
	assert_true(test_meter.charged[RELAY_UP] == total);
	assert_true(test_meter.biggest <= grant);
	stats_delta(f, &spliced, &copied);
	assert_true(spliced > 0);
	assert_no_pipe_out();
}

#define T(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_bulk_upload_is_spliced_and_returns_every_pipe),
		T(test_registered_watchers_are_taken_over_in_place),
		T(test_bulk_upload_without_splice_is_copied),
		T(test_bulk_upload_copies_when_pool_refuses_every_pipe),
		T(test_no_fd_for_a_pipe_copies_and_tries_once),
		T(test_bidirectional_bulk_switches_between_pipe_and_buffer),
		T(test_splice_turned_off_mid_stream_keeps_order),
		T(test_stop_with_bytes_in_a_pipe_returns_it_and_resets_the_peer),
		T(test_pipe_full_of_small_segments_does_not_spin),
		T(test_initial_bytes_go_first),
		T(test_half_close_in_bulk_mode_keeps_other_direction),
		T(test_small_exchange_never_takes_a_pipe),
		T(test_metered_direction_reads_only_its_grant),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
