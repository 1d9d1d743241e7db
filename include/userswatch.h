/*
 * userswatch: notices that a file (the users file of `users-file PATH
 * watch`) was rewritten, through inotify on its directory, and says so
 * through a callback. It does not read the file: the caller reloads.
 */
#ifndef SOCKS5D_USERSWATCH_H
#define SOCKS5D_USERSWATCH_H

#include <stdbool.h>

struct loop;
struct userswatch;

/* Runs from the loop once changes have settled (a burst of events is one
 * call). It may call userswatch_stop on the watch that called it. */
typedef void (*userswatch_cb)(void *arg);

/*
 * Watches path's directory for the file being written and closed
 * (IN_CLOSE_WRITE) or renamed into place (IN_MOVED_TO, how `socks5d passwd`
 * and most editors replace it); a symlink is followed once, now. cb runs
 * 100 ms after the last such event. Returns NULL with errno when inotify
 * cannot be set up (the caller logs it).
 */
struct userswatch *userswatch_start(struct loop *loop, const char *path, userswatch_cb cb,
	void *arg);
/* Stops watching; the memory goes after the loop's current batch. NULL is
 * a no-op. */
void userswatch_stop(struct userswatch *w);
/* The path given to userswatch_start. */
const char *userswatch_path(const struct userswatch *w);
/* After a (re)load: makes *w watch path when want is true (kept when it
 * watches path already, replaced when the path changed), or stops it.
 * A watch that cannot be set up is logged and leaves *w NULL. */
void userswatch_sync(struct userswatch **w, struct loop *loop, const char *path, bool want,
	userswatch_cb cb, void *arg);

#endif
