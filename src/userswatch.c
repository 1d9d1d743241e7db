/*
 * userswatch: an inotify descriptor in the loop, watching one directory
 * for one name. The directory, not the file: a writer that renames a new
 * file into place (socks5d passwd, editors) replaces the inode, and a watch
 * on the old inode would see nothing after the first change. Events are
 * coalesced by a short timer, so a burst (an editor's write, chmod and
 * rename) is one callback. Reading and checking the file is the caller's
 * job (main reloads the whole configuration, which keeps the running one
 * when the new file is broken).
 */
#include "userswatch.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

/* Long enough to take in a writer's burst of events, short enough to feel
 * immediate. */
#define USERSWATCH_SETTLE_MS 100

struct userswatch {
	struct loop *loop;
	struct watcher watcher; /* the inotify descriptor */
	struct timer settle;    /* runs cb once events stop */
	struct release release;
	bool stopped;
	userswatch_cb cb;
	void *arg;
	char path[PATH_MAX]; /* as given */
	char dir[PATH_MAX];  /* watched: the directory of the resolved path */
	char base[NAME_MAX + 1];
};

static void
userswatch_free(void *arg)
{
	free(arg);
}

static void
on_settled(struct loop *loop, void *arg)
{
	struct userswatch *w = arg;

	if (w->stopped)
		return;
	log_info("users file %s changed: reloading", w->path);
	w->cb(w->arg); /* may stop w: nothing of w is used after it */
}

/* Reads every queued event; true when one names the file (or events were
 * lost, which may have hidden one). */
static bool
drain_events(struct userswatch *w)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;

	for (;;) {
		ssize_t n = read(w->watcher.fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN)
				log_warn("users file watch %s: read", w->dir);
			return hit;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;

			/* Lost events (overflow) may have hidden the file's. */
			if ((ev->mask & IN_Q_OVERFLOW) ||
				(ev->len > 0 && strcmp(ev->name, w->base) == 0))
				hit = true;
			else if (ev->mask & IN_IGNORED)
				log_warnx(
					"users file watch: %s is gone; changes are no longer seen",
					w->dir);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void
on_inotify(struct loop *loop, unsigned events, void *arg)
{
	struct userswatch *w = arg;

	if (w->stopped)
		return;
	if (drain_events(w))
		timer_start(loop, &w->settle, USERSWATCH_SETTLE_MS);
}

/* Splits the resolved path into w->dir and w->base. 0, or -1 with errno. */
static int
split_path(struct userswatch *w, const char *path)
{
	char real[PATH_MAX];
	const char *p = realpath(path, real) ? real : path;
	const char *slash = strrchr(p, '/');
	size_t blen = strlen(slash ? slash + 1 : p);

	if (blen == 0 || blen > NAME_MAX) {
		errno = EINVAL;
		return -1;
	}
	memcpy(w->base, slash ? slash + 1 : p, blen + 1);
	if (!slash)
		snprintf(w->dir, sizeof(w->dir), ".");
	else if (slash == p)
		snprintf(w->dir, sizeof(w->dir), "/");
	else
		snprintf(w->dir, sizeof(w->dir), "%.*s", (int)(slash - p), p);
	return 0;
}

struct userswatch *
userswatch_start(struct loop *loop, const char *path, userswatch_cb cb, void *arg)
{
	struct userswatch *w = calloc(1, sizeof(*w));
	int fd = -1, saved;

	if (!w)
		return NULL;
	w->loop = loop;
	w->cb = cb;
	w->arg = arg;
	snprintf(w->path, sizeof(w->path), "%s", path);
	timer_init(&w->settle, on_settled, w);
	if (split_path(w, path) < 0)
		goto fail;
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, w->dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0)
		goto fail;
	watcher_init(&w->watcher, fd, on_inotify, w);
	if (loop_watch(loop, &w->watcher, LOOP_READ) < 0)
		goto fail;
	log_info("watching %s for changes", w->path);
	return w;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	free(w);
	errno = saved;
	return NULL;
}

void
userswatch_stop(struct userswatch *w)
{
	if (!w || w->stopped)
		return;
	w->stopped = true;
	timer_stop(w->loop, &w->settle);
	loop_unwatch_closing(w->loop, &w->watcher);
	close(w->watcher.fd);
	w->watcher.fd = -1;
	loop_release(w->loop, &w->release, userswatch_free, w);
}

const char *
userswatch_path(const struct userswatch *w)
{
	return w->path;
}

void
userswatch_sync(struct userswatch **w, struct loop *loop, const char *path, bool want,
	userswatch_cb cb, void *arg)
{
	if (*w && want && strcmp((*w)->path, path) == 0)
		return;
	userswatch_stop(*w);
	*w = NULL;
	if (!want)
		return;
	*w = userswatch_start(loop, path, cb, arg);
	if (!*w)
		log_warn("users-file %s: cannot watch it; reload to apply changes", path);
}
