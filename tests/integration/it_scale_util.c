/*
 * it_scale_util: /proc readers (CPU time, children, exit, descriptors), a
 * bounded HTTP client for the metrics endpoint, the fixed up/down target
 * and a background program runner (see it_scale_util.h).
 */
#include "it_scale_util.h"
#include "it_acl_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- /proc ------------------------------------------------------------- */

/* The fields of /proc/PID/stat after "(comm)", which may hold spaces and
 * parentheses: from the last ')'. */
static bool
it_scale_stat(pid_t pid, char *state, long *ppid, unsigned long long *ticks)
{
	char path[64], buf[1024];
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return false;
	/* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	if (sscanf(p + 1, " %c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", state, ppid, &ut,
		    &st) != 4)
		return false;
	*ticks = ut + st;
	return true;
}

long long
it_scale_cpu_ms(pid_t pid)
{
	unsigned long long ticks;
	long ppid, hz = sysconf(_SC_CLK_TCK);
	char state;

	if (!it_scale_stat(pid, &state, &ppid, &ticks) || hz <= 0)
		return -1;
	return (long long)(ticks * 1000ULL / (unsigned long long)hz);
}

int
it_scale_children(pid_t pid, pid_t *out, int cap)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < cap) {
		unsigned long long ticks;
		long ppid;
		char state;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid_t p = (pid_t)atoi(e->d_name);
		if (it_scale_stat(p, &state, &ppid, &ticks) && ppid == pid && state != 'Z')
			out[n++] = p;
	}
	closedir(d);
	return n;
}

bool
it_scale_pid_gone(pid_t pid)
{
	unsigned long long ticks;
	long ppid;
	char state;

	return !it_scale_stat(pid, &state, &ppid, &ticks) || state == 'Z' || state == 'X';
}

int
it_scale_fd_count(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ---- HTTP -------------------------------------------------------------- */

int
it_scale_http(uint16_t port, const char *request, char **resp, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	int fd, status = 0;

	if (resp != NULL)
		*resp = NULL;
	if (buf == NULL)
		return -1;
	fd = it_connect_addr("127.0.0.1", port, NULL);
	if (fd < 0 || it_send_all(fd, request, strlen(request)) < 0) {
		/* A server that closes on the first bad byte may reset the
		 * rest of a send: that is an answer (closed) too. */
		if (fd < 0 || (errno != EPIPE && errno != ECONNRESET)) {
			it_close(fd);
			free(buf);
			return -1;
		}
	}
	for (;;) {
		uint64_t now = it_now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (now >= deadline)
			break;
		int pr = poll(&p, 1, (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	it_close(fd);
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) == 0 && len >= 12)
		status = atoi(buf + 9);
	if (resp != NULL)
		*resp = buf;
	else
		free(buf);
	return status;
}

bool
it_scale_metric(const char *text, const char *key, unsigned long long *v)
{
	size_t kl = strlen(key);
	const char *p = text;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			*v = strtoull(p + kl + 1, NULL, 10);
			return true;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

/* ---- the up/down target ------------------------------------------------ */

static void
it_scale_updown_serve(int fd)
{
	uint8_t buf[IT_SCALE_DOWN];
	struct timeval tv = { .tv_sec = 5 };
	size_t got = 0;
	uint64_t st = IT_SCALE_DOWN_SEED;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < IT_SCALE_UP) {
		ssize_t r = recv(fd, buf, IT_SCALE_UP - got, 0);
		if (r <= 0)
			return;
		got += (size_t)r;
	}
	it_fill(buf, sizeof(buf), &st);
	(void)it_send_all(fd, buf, sizeof(buf));
}

int
it_scale_updown_start(struct it_target *t)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t parent = getpid();

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 64) < 0 ||
		getsockname(lfd, (struct sockaddr *)&sin, &len) < 0) {
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	t->family = AF_INET;
	t->port = ntohs(sin.sin_port);
	t->pid = fork();
	if (t->pid < 0) {
		close(lfd);
		return -1;
	}
	if (t->pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		signal(SIGPIPE, SIG_IGN);
		alarm(300);
		for (;;) {
			int cfd = accept(lfd, NULL, NULL);
			if (cfd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				_exit(1);
			}
			/* One at a time is enough: the tests run sessions in turn. */
			it_scale_updown_serve(cfd);
			close(cfd);
		}
	}
	close(lfd);
	return 0;
}

void
it_scale_updown_stop(struct it_target *t)
{
	it_scale_stop(&t->pid);
}

/* ---- programs ---------------------------------------------------------- */

pid_t
it_scale_spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	int devnull = open("/dev/null", O_RDONLY);
	int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (devnull < 0 || logfd < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 ||
		dup2(logfd, 2) < 0)
		_exit(126);
	close_range(3, ~0U, 0);
	signal(SIGPIPE, SIG_DFL);
	execv(argv[0], argv);
	_exit(127);
}

void
it_scale_stop(pid_t *pid)
{
	uint64_t deadline;
	int status;

	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	deadline = it_now_ms() + 3000;
	while (waitpid(*pid, &status, WNOHANG) == 0) {
		if (it_now_ms() >= deadline) {
			kill(*pid, SIGKILL);
			waitpid(*pid, &status, 0);
			break;
		}
		it_sleep_ms(10);
	}
	*pid = 0;
}

/* ---- a daemon with few descriptors ------------------------------------- */

int
it_scale_fixture_start_nofile(void **state, const char *config_lines, unsigned nofile)
{
	const char *server = getenv("SOCKS5D"), *keep;
	struct it_fixture *fx = calloc(1, sizeof(*fx));
	struct it_daemon *d;
	uint64_t deadline;
	FILE *f;

	if (fx == NULL)
		return -1;
	*state = fx;
	d = &fx->d;
	keep = getenv("IT_KEEP");
	d->keep = keep != NULL && *keep != '\0';
	if (server == NULL || *server == '\0')
		server = "build/socks5d";
	snprintf(d->dir, sizeof(d->dir), "/tmp/socks5d-it-nofile.XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		return -1;
	snprintf(d->conf, sizeof(d->conf), "%s/socks5d.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/server.log", d->dir);
	if ((d->port = it_acl_free_port()) == 0 || (f = fopen(d->conf, "w")) == NULL)
		return -1;
	fprintf(f, "# written by tests/integration/it_scale_util.c\nlisten 127.0.0.1:%u\n%s",
		d->port, config_lines);
	if (fclose(f) != 0)
		return -1;
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0) {
		const struct rlimit rl = { .rlim_cur = nofile, .rlim_max = nofile };
		char *argv[] = { (char *)server, "-f", d->conf, NULL };
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		int devnull = open("/dev/null", O_RDONLY);
		int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (devnull < 0 || logfd < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 ||
			dup2(logfd, 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			_exit(125);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	deadline = it_now_ms() + 5000;
	while (it_now_ms() < deadline) {
		int fd;
		if (!it_daemon_running(d))
			break;
		if ((fd = it_connect_addr("127.0.0.1", d->port, NULL)) >= 0) {
			it_close(fd);
			fx->started = true;
			return 0;
		}
		it_sleep_ms(20);
	}
	fprintf(stderr, "daemon with RLIMIT_NOFILE %u did not start\n", nofile);
	d->keep = true;
	it_daemon_log_tail(d, 20);
	return -1;
}
