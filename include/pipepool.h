/*
 * pipepool: the kernel pipes the relay splices through. A pipe is taken
 * only while a bulk direction has bytes in it and goes back (empty) as soon
 * as they are written, so an idle session holds none; while bulk transfers
 * run, a few empty ones are kept for reuse. At most a bounded number are out at once, and the pool
 * says no (the caller copies through a buffer instead) when that bound,
 * the fd limit or the kernel's per-user pipe budget is reached.
 */
#ifndef SOCKS5D_PIPEPOOL_H
#define SOCKS5D_PIPEPOOL_H

#include <stdbool.h>
#include <stddef.h>

struct pipe_pair {
	int rd, wr; /* read and write ends, nonblocking; -1 when not held */
	size_t cap; /* bytes the pipe holds */
};

#define PIPEPOOL_MAX_CACHED 16

struct pipepool_stats {
	size_t in_use;      /* pipes held by relays now */
	size_t cached;      /* empty pipes kept for reuse */
	size_t refused;     /* pipepool_get calls that said no, ever */
	size_t make_failed; /* attempts to make a pipe that failed, ever */
};

/* Capacity asked of each pipe (F_SETPIPE_SZ), in bytes; a pipe the kernel
 * will not grow that far is not used. At most max_in_use pipes are out at
 * once; max_cached (at most PIPEPOOL_MAX_CACHED) empty ones are kept. May be called again (reload):
 * cached pipes are closed, pipes in use go when they are returned. */
void pipepool_configure(size_t capacity, size_t max_in_use, size_t max_cached);
/* Fills p with an empty pipe of p->cap bytes (the configured capacity,
 * clamped to /proc/sys/fs/pipe-max-size): returns 0, or -1 (errno set) when
 * none can be had now. */
int pipepool_get(struct pipe_pair *p) __attribute__((warn_unused_result));
/* Returns p's pipe; empty says no bytes are left in it (only then is it
 * reused, else it is closed). Sets p's fds to -1. */
void pipepool_put(struct pipe_pair *p, bool empty);
/* Closes the cached pipes: when fds run short (accept's EMFILE) and at exit. */
void pipepool_trim(void);
/* Users of the pool (relays with a bulk direction) say when they start and
 * end; when the last one ends the cached pipes are closed, so a process
 * with no bulk transfer left holds no pipe at all. */
void pipepool_hold(void);
void pipepool_release(void);
void pipepool_get_stats(struct pipepool_stats *out);

#endif
