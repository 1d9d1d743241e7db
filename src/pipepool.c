/*
 * pipepool: pipes for splice(2), handed out while data is in flight. The
 * pipe is what makes splice fast on this path: 1 MiB pipes moved bulk data
 * at about 0.35-0.45 CPU-s/GB where 64 KiB ones cost more than copying
 * through a 256 KiB buffer (see README "Performance"), so a pipe that
 * cannot be made that big is closed rather than used. The kernel charges
 * pipe capacity to the user (fs/pipe-user-pages-soft, 64 MiB by default);
 * past it F_SETPIPE_SZ fails with EPERM and the caller falls back to
 * copying, which is slower but never stalls.
 */
#include "pipepool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strnum.h"

#define PIPE_MAX_SIZE_FILE "/proc/sys/fs/pipe-max-size"

static size_t pool_capacity = (size_t)1 << 20;
static size_t pool_max_in_use = 64;
static size_t pool_max_cached = 8;
static struct pipe_pair pool_cache[PIPEPOOL_MAX_CACHED]; /* pool_ncached empty pipes */
static size_t pool_ncached;
static size_t pool_in_use;
static size_t pool_refused;
static size_t pool_holders;
/* A pipe could not be made (fd limit, per-user pipe budget): making one
 * again before something is given back would only fail again, at four
 * syscalls per bulk read. Cleared when a pipe or the last holder goes. */
static bool pool_make_failed;
static size_t pool_make_failures;

/* The largest pipe an unprivileged process may ask for. */
static size_t
system_pipe_max(void)
{
	FILE *f = fopen(PIPE_MAX_SIZE_FILE, "re");
	char line[32];
	uint64_t v = 0;

	if (!f)
		return 0;
	/* One number and a newline; anything else counts as unknown (0). */
	if (!fgets(line, sizeof(line), f) ||
		strnum_parse_u64_span(line, strcspn(line, "\n"), 0, SIZE_MAX, &v) != STRNUM_OK)
		v = 0;
	fclose(f);
	return (size_t)v;
}

static void
close_pair(struct pipe_pair *p)
{
	if (p->rd >= 0)
		close(p->rd);
	if (p->wr >= 0)
		close(p->wr);
	p->rd = p->wr = -1;
}

void
pipepool_trim(void)
{
	while (pool_ncached > 0)
		close_pair(&pool_cache[--pool_ncached]);
}

void
pipepool_hold(void)
{
	pool_holders++;
}

void
pipepool_release(void)
{
	if (pool_holders > 0 && --pool_holders == 0) {
		pipepool_trim();
		pool_make_failed = false;
	}
}

void
pipepool_configure(size_t capacity, size_t max_in_use, size_t max_cached)
{
	size_t sysmax = system_pipe_max();

	pipepool_trim();
	pool_make_failed = false;
	if (sysmax > 0 && capacity > sysmax)
		capacity = sysmax;
	pool_capacity = capacity;
	pool_max_in_use = max_in_use;
	pool_max_cached = max_cached < PIPEPOOL_MAX_CACHED ? max_cached : PIPEPOOL_MAX_CACHED;
}

static int
make_pipe(struct pipe_pair *p)
{
	int fds[2];

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	p->rd = fds[0];
	p->wr = fds[1];
	p->cap = pool_capacity;
	/* F_SETPIPE_SZ rounds up to a power of two of pages: check "at least". */
	int got = fcntl(p->wr, F_SETPIPE_SZ, (int)pool_capacity);
	if (got < 0 || (size_t)got < pool_capacity) {
		int saved = got < 0 ? errno : ENOBUFS;
		close_pair(p);
		errno = saved;
		return -1;
	}
	return 0;
}

int
pipepool_get(struct pipe_pair *p)
{
	p->rd = p->wr = -1;
	if (pool_in_use >= pool_max_in_use) {
		pool_refused++;
		errno = ENOBUFS;
		return -1;
	}
	if (pool_ncached > 0) {
		*p = pool_cache[--pool_ncached];
	} else if (pool_make_failed) {
		pool_refused++;
		errno = ENOBUFS;
		return -1;
	} else if (make_pipe(p) < 0) {
		pool_make_failed = true;
		pool_make_failures++;
		pool_refused++;
		return -1;
	}
	pool_in_use++;
	return 0;
}

void
pipepool_put(struct pipe_pair *p, bool empty)
{
	if (p->rd < 0)
		return;
	pool_in_use--;
	pool_make_failed = false;
	/* A pipe made before a reconfigure keeps its old size: not reused. */
	if (empty && pool_ncached < pool_max_cached && p->cap == pool_capacity) {
		pool_cache[pool_ncached++] = *p;
		p->rd = p->wr = -1;
		return;
	}
	close_pair(p);
}

void
pipepool_get_stats(struct pipepool_stats *out)
{
	out->in_use = pool_in_use;
	out->cached = pool_ncached;
	out->refused = pool_refused;
	out->make_failed = pool_make_failures;
}
