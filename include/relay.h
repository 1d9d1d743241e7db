/*
 * relay: moves bytes both ways between two connected TCP sockets until both
 * directions are finished. Per direction at most one buffer or one pipe,
 * taken from a shared pool only while data is in flight, so an idle session
 * holds neither. A direction starts by copying through a buffer; once a
 * single read brings a bulk amount (RELAY_BULK_READ) it splices through a
 * pipe instead, falling back to the buffer whenever no pipe can be had.
 * Backpressure is interest: when the destination cannot take more, the
 * source is not read. Half-close passes a FIN on as shutdown().
 */
#ifndef SOCKS5D_RELAY_H
#define SOCKS5D_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "pipepool.h"

struct bufpool_buf;

enum relay_end {
	RELAY_END_DONE = 0, /* both directions finished with FIN */
	RELAY_END_IDLE,     /* idle timeout */
	RELAY_END_ERROR,    /* read/write error (reset, EPIPE, ...) */
	RELAY_END_NOMEM,    /* no buffer could be allocated */
};

#define RELAY_UP 0   /* client -> target */
#define RELAY_DOWN 1 /* target -> client */

/* A read at least this large (or filling the whole buffer, if that is
 * smaller) marks a direction as bulk: it splices from then on. Below it
 * (requests, echoes, interactive traffic) copying through a pooled buffer
 * costs the same and needs no pipe. */
#define RELAY_BULK_READ (64 * 1024)

/* TCP_NOTSENT_LOWAT on the destination of a bulk direction: unsent data in
 * the kernel stays near one pipe's worth, so the socket is written by this
 * process (on its CPU) rather than drained by ACK processing wherever the
 * peer's ACKs land. Same-minute A/B, 8 rounds, 32 streams: upload 0.91x
 * direct against 0.81x without, download 0.89-0.95x against 0.74-0.84x;
 * 128-256 KiB cost more wakeups than they saved. On a second machine type
 * (PVM guest, 2026-12) no value from 128 KiB to unlimited stood out of the
 * noise. Overridable (CFLAGS=-DRELAY_NOTSENT_LOWAT=...) for such A/Bs. */
#ifndef RELAY_NOTSENT_LOWAT
#define RELAY_NOTSENT_LOWAT (1024 * 1024)
#endif

struct relay_dir {
	struct bufpool_buf *pb; /* bytes read from src not yet written; NULL when empty */
	struct pipe_pair pipe;  /* spliced bytes not yet written; rd -1 when none */
	size_t inpipe;          /* bytes in pipe */
	bool pipe_full;         /* a splice into the pipe found no room (slots) */
	bool bulk;              /* splice when a pipe can be had */
	bool bulk_setup;        /* relay_dir_turned_bulk has run */
	bool throttled;         /* the throttle said wait: src not read until relay_resume */
	bool eof;               /* src has sent FIN */
	bool shut;              /* FIN passed on: dst shut down for writing */
	uint64_t bytes;         /* bytes written to dst */
};

typedef void (*relay_done_cb)(enum relay_end how, int err, void *arg);

/* A metered relay (rate limits, quotas): before each read of direction dir
 * allow says how many bytes it may read (0: none, read again after
 * relay_resume), and charge is told what was read. Called from the
 * relay's events only. The meter embeds this and is passed it back. */
struct relay_throttle {
	size_t (*allow)(struct relay_throttle *t, int dir, size_t want);
	void (*charge)(struct relay_throttle *t, int dir, size_t n);
};

struct relay {
	struct loop *loop;
	struct watcher *w[2];    /* the caller's: w[0] client fd, w[1] target fd */
	struct relay_dir dir[2]; /* RELAY_UP, RELAY_DOWN */
	struct timer idle_timer;
	uint64_t last_active_ms;         /* loop time of the last byte moved */
	unsigned idle_ms;                /* 0: no idle timeout */
	bool stopped;                    /* relay_stop ran: both fds closed */
	bool holds_pipepool;             /* counted in pipepool_hold (a bulk direction) */
	struct relay_throttle *throttle; /* NULL: read whatever fits */
	relay_done_cb done;
	void *arg;
};

/* The splice pipes: 1 MiB each (the most an unprivileged process may ask
 * for by default, and where splice measured fastest), at most 64 out at
 * once (the kernel's default per-user pipe budget is 64 MiB), 8 kept. */
#define RELAY_PIPE_SIZE ((size_t)1 << 20)
#define RELAY_MAX_PIPES 64
#define RELAY_CACHED_PIPES 8

/* Whether bulk directions splice (relay-splice; default on). */
void relay_set_splice(bool on);

struct relay_stats {
	uint64_t spliced; /* bytes written from a pipe */
	uint64_t copied;  /* bytes written from a buffer */
};
/* Process-wide, live (not only ended sessions). */
void relay_get_stats(struct relay_stats *out);

/* Takes ownership of the fds of cw (client) and tw (target) and of the
 * caller's watchers themselves, registered or not: their callbacks are
 * re-pointed at the relay (so they must live as long as it does) and an
 * epoll_ctl is made only where the interest changes. up/down_
 * initial are bytes already received that must be sent first (pipelined
 * client payload, an unsent reply); they are copied. Returns 0, or -1 (fds
 * still owned by the caller, watchers unregistered) on failure. done runs
 * once, never from inside relay_start; after it runs the fds are closed and
 * the relay may be freed. */
int relay_start(struct relay *r, struct loop *loop, struct watcher *cw, struct watcher *tw,
	const uint8_t *up_initial, size_t up_len, const uint8_t *down_initial, size_t down_len,
	unsigned idle_ms, relay_done_cb done, void *arg) __attribute__((warn_unused_result));
/* Meters the relay from now on (t must outlive it; NULL: no more). */
void relay_set_throttle(struct relay *r, struct relay_throttle *t);
/* The throttle has bytes for dir again: read it (interest, not a read from
 * inside this call; done may run when the epoll update fails). */
void relay_resume(struct relay *r, int dir);
/* Stops without calling done: unregisters and closes both fds and returns
 * buffers and pipes (the relay is embedded in its owner, which releases
 * it). A peer that bytes held by the relay were meant for gets a reset (the
 * stream was cut), the others a FIN. Idempotent. */
void relay_stop(struct relay *r);

#endif
