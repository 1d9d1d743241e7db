/*
 * loop: one epoll set, embedded watchers and timers (min-heap), a cached
 * monotonic clock, signals through signalfd, and an end-of-iteration
 * release list so objects closed in the middle of a batch are freed safely.
 */
#ifndef SOCKS5D_LOOP_H
#define SOCKS5D_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

#define LOOP_READ 0x1u
#define LOOP_WRITE 0x2u
#define LOOP_ERROR 0x4u /* in events only: EPOLLERR or EPOLLHUP came with them */

/* Called with the events that fired (LOOP_READ|LOOP_WRITE). EPOLLERR and
 * EPOLLHUP are reported as both (as far as the mask asks for either), so
 * errors surface through read/write; LOOP_ERROR is added with them. */
typedef void (*loop_io_cb)(struct loop *loop, unsigned events, void *arg);
typedef void (*loop_timer_cb)(struct loop *loop, void *arg);
typedef void (*loop_signal_cb)(struct loop *loop, int signo, void *arg);
typedef void (*loop_release_cb)(void *arg);

/* Embedded in the object that owns the fd. The generation counts the
 * watcher's registrations (EPOLL_CTL_ADD) and travels with each event, in
 * the low bits of epoll's data pointer (nginx's "instance" bit): an event
 * queued for a registration that ended earlier in the same batch (the fd
 * was closed and the watcher registered again for a new one) no longer
 * matches and is dropped by the loop. Owners are allocated zeroed; re-
 * initialising a watcher keeps its generation counting. */
struct watcher {
	int fd;             /* -1 when not registered */
	unsigned mask;      /* current interest, LOOP_READ|LOOP_WRITE */
	bool registered;    /* in the epoll set */
	uint8_t generation; /* registrations so far, modulo LOOP_GENERATIONS */
	loop_io_cb cb;
	void *arg;
};

/* Registrations told apart within one batch: the pointer's alignment. */
#define LOOP_GENERATIONS ((unsigned)_Alignof(struct watcher))

struct timer {
	uint64_t deadline_ms; /* monotonic ms */
	uint64_t seq;         /* tie-breaker: FIFO among equal deadlines */
	size_t heap_index;    /* position in the heap, SIZE_MAX when idle */
	loop_timer_cb cb;
	void *arg;
};

/* An object queued for release after the current batch (embed it). */
struct release {
	struct release *next;
	loop_release_cb cb;
	void *arg;
	bool queued;
};

struct loop *loop_new(void);
/* Runs pending releases, then frees the loop (watchers must be gone). */
void loop_free(struct loop *loop);

/* Runs until loop_stop. Returns 0, or -1 when epoll_wait fails fatally. */
int loop_run(struct loop *loop);
void loop_stop(struct loop *loop);
/* One iteration: waits at most timeout_ms for events (0: poll), dispatches
 * them, runs due timers and releases. For tests and fuzzers. */
int loop_run_once(struct loop *loop, int timeout_ms);
/* Monotonic milliseconds, cached once per iteration. */
uint64_t loop_now(const struct loop *loop);
/* Refreshes the cached clock (for long startup work). */
void loop_update_time(struct loop *loop);

void watcher_init(struct watcher *w, int fd, loop_io_cb cb, void *arg);
/* Hands a watcher, registered or not, to another owner: its events from now
 * on (later ones of the current batch too) go to cb; the registration and
 * interest stay as they are, so this costs no syscall. */
void watcher_set_callback(struct watcher *w, loop_io_cb cb, void *arg);
/* Sets the interest mask; registers on first use, unregisters when mask is 0.
 * No syscall when the mask is unchanged. Returns -1 with errno on failure. */
int loop_watch(struct loop *loop, struct watcher *w, unsigned mask)
	__attribute__((warn_unused_result));
/* Removes the fd from the set (before close). Safe when not registered. */
void loop_unwatch(struct loop *loop, struct watcher *w);
/* For an fd that is closed right after and never shared with another
 * process: closing removes it from the epoll set, so only the watcher is
 * marked unregistered (no syscall). */
void loop_unwatch_closing(struct loop *loop, struct watcher *w);

void timer_init(struct timer *t, loop_timer_cb cb, void *arg);
/* (Re)arms the timer to fire after ms milliseconds from loop_now. */
void timer_start(struct loop *loop, struct timer *t, uint64_t ms);
void timer_stop(struct loop *loop, struct timer *t);
/* For an idle timeout that is not re-armed per event (that would be a heap
 * operation per event): call it when t fires. Returns true when nothing
 * happened for idle_ms since last_active_ms; otherwise re-arms t for the
 * remainder and returns false. */
bool timer_idle_expired(struct loop *loop, struct timer *t, uint64_t last_active_ms,
	unsigned idle_ms);
static inline bool
timer_active(const struct timer *t)
{
	return t->heap_index != (size_t)-1;
}

/* Blocks the signal and delivers it through the loop's signalfd. */
int loop_signal(struct loop *loop, int signo, loop_signal_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Queues cb(arg) to run after the current batch of events (once). */
void loop_release(struct loop *loop, struct release *r, loop_release_cb cb, void *arg);

#endif
