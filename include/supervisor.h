/*
 * supervisor: the parent of `workers N` worker processes. It forks them
 * after the configuration is loaded, restarts one that dies, passes SIGHUP
 * (after checking the new configuration itself) and SIGTERM on to all, and
 * tells systemd it is ready once every worker is.
 */
#ifndef SOCKS5D_SUPERVISOR_H
#define SOCKS5D_SUPERVISOR_H

#include <stdbool.h>

struct config;
struct supervisor_options;

/* Runs one worker in the forked child: returns its exit status. ready_fd
 * gets one byte once the worker's listeners are bound. */
typedef int (*supervisor_worker_fn)(struct config *cfg, const struct supervisor_options *so,
	unsigned index, int ready_fd);

struct supervisor_options {
	const char *path; /* configuration file, re-read on SIGHUP */
	bool explicit_path;
	bool debug;        /* -d */
	int inherited_fds; /* socket-activated listeners (from fd 3) */
	supervisor_worker_fn run_worker;
};

/* Takes the config reference. Returns the process exit status. */
int supervisor_run(struct config *cfg, const struct supervisor_options *so);

#endif
