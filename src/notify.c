/*
 * notify: speaks systemd's notification protocol (sd_notify(3)) with a plain
 * AF_UNIX datagram socket, and collects socket-activated listeners
 * (sd_listen_fds(3)). Environment variables are read once and unset so that
 * nothing the daemon might start inherits them.
 */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "strnum.h"

#define LISTEN_FDS_START 3

static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;
static int notify_fd = -1;
static uint64_t watchdog_usec;
static struct timer watchdog_timer;
static uint64_t watchdog_ms;

bool
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC");
	const char *wd_pid = getenv("WATCHDOG_PID");
	uint64_t v, pid;
	size_t len;

	if (wd && strnum_parse_u64(wd, 1, UINT64_MAX, &v) == STRNUM_OK &&
		(!wd_pid ||
			(strnum_parse_u64(wd_pid, 0, UINT64_MAX, &pid) == STRNUM_OK &&
				pid == (uint64_t)getpid())))
		watchdog_usec = v;
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	if (!path || (path[0] != '/' && path[0] != '@'))
		return false;
	len = strlen(path);
	if (len >= sizeof(notify_addr.sun_path))
		return false;
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	/* "@name" is an abstract socket: a leading NUL and no terminator. */
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
		(path[0] == '@' ? 0 : 1));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unsetenv("NOTIFY_SOCKET");
	return notify_fd >= 0;
}

void
notify_disable(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
	watchdog_usec = 0;
}

int
notify_send(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;
	ssize_t w;

	if (notify_fd < 0)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg)) {
		errno = EMSGSIZE;
		return -1;
	}
	do {
		w = sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
			notify_addr_len);
	} while (w < 0 && errno == EINTR);
	return w < 0 ? -1 : 0;
}

int
notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
		(unsigned long long)ts.tv_sec * 1000000ull +
			(unsigned long long)ts.tv_nsec / 1000ull);
}

uint64_t
notify_watchdog_usec(void)
{
	return watchdog_usec;
}

static void
on_watchdog(struct loop *loop, void *arg)
{
	(void)notify_send("WATCHDOG=1");
	timer_start(loop, &watchdog_timer, watchdog_ms);
}

void
notify_watchdog_start(struct loop *loop)
{
	if (!watchdog_usec)
		return;
	watchdog_ms = watchdog_usec / 2000u ? watchdog_usec / 2000u : 1;
	timer_init(&watchdog_timer, on_watchdog, NULL);
	on_watchdog(loop, NULL);
}

void
notify_watchdog_stop(struct loop *loop)
{
	if (watchdog_usec)
		timer_stop(loop, &watchdog_timer);
}

int
notify_listen_fds(void)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	uint64_t pid, n;
	int count = 0;

	if (pid_s && fds_s && strnum_parse_u64(pid_s, 0, UINT64_MAX, &pid) == STRNUM_OK &&
		pid == (uint64_t)getpid() && strnum_parse_u64(fds_s, 1, 1023, &n) == STRNUM_OK) {
		count = (int)n;
		for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + count; fd++) {
			int fl = fcntl(fd, F_GETFL);
			if (fl >= 0)
				(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		}
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return count;
}
