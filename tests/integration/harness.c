/*
 * harness: data helpers (xorshift stream, FNV-1a), and the server under test:
 * config file in a temp dir, a free port, fork/exec with stderr to a log,
 * readiness by connecting, and a bounded SIGTERM stop. The server is
 * $SOCKS5D (default build/socks5d); IT_SERVER=microsocks runs microsocks
 * instead, so the harness can be checked while socks5d is being written.
 * Targets live in targets.c, the raw client in client.c, the fake DNS
 * server in fake_dns.c; the end of this file has the helpers of the BIND,
 * UDP, DNS and SOCKS4 tests (addresses, UDP sockets, two-way exchange,
 * running a real client program).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IT_START_TIMEOUT_MS 5000
#define IT_STOP_TIMEOUT_MS 5000
#define IT_START_ATTEMPTS 5

int it_harness_failures;
static void it_harness_close_leftovers(void);
static const char *it_server_path;
static bool it_microsocks;
static bool it_ipv6;

/* ---- data -------------------------------------------------------------- */

void
it_hash_init(struct it_hash *hs)
{
	hs->h = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
	hs->n = 0;
}

void
it_hash_update(struct it_hash *hs, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = hs->h;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL; /* FNV-1a 64 prime */
	}
	hs->h = h;
	hs->n += n;
}

void
it_fill(void *p, size_t n, uint64_t *state)
{
	uint8_t *b = p;
	uint64_t x = *state ? *state : 1; /* xorshift is stuck at 0 */
	size_t i = 0;

	while (i < n) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		for (int k = 0; k < 8 && i < n; k++)
			b[i++] = (uint8_t)(x >> (8 * k));
	}
	*state = x;
}

uint64_t
it_stream_hash(uint64_t seed, size_t n)
{
	uint8_t chunk[65536];
	struct it_hash hs;
	uint64_t st = seed;

	/* Chunks must be multiples of 8 so that the stream does not depend on
	 * how it is cut; 65536 is. */
	it_hash_init(&hs);
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
		it_fill(chunk, k, &st);
		it_hash_update(&hs, chunk, k);
		n -= k;
	}
	return hs.h;
}

void
it_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

uint64_t
it_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
it_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
it_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
it_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the server under test --------------------------------------------- */

int
it_check_config(const char *text, char *out, size_t cap)
{
	char dir[] = "/tmp/socks5d-check.XXXXXX", conf[64], cmd[512];
	FILE *f;
	size_t n = 0;
	int status;

	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/t.conf", dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s -t -f %s 2>&1", getenv("SOCKS5D"), conf);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (n + 1 < cap && fgets(out + n, (int)(cap - n), f))
		n += strlen(out + n);
	out[n] = '\0';
	status = pclose(f);
	unlink(conf);
	rmdir(dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool
it_is_microsocks(void)
{
	return it_microsocks;
}

bool
it_server_has(enum it_cap cap)
{
	/* microsocks: blocking one-recv-per-message handshake, copy loop that
	 * ends on the first EOF, reply 0.0.0.0:0, 05 FF to any bad greeting, no
	 * timeouts, default SIGTERM action. */
	const unsigned microsocks_caps = 0;

	if (!it_microsocks)
		return true;
	return (microsocks_caps & (unsigned)cap) != 0;
}

void
it_require(enum it_cap cap)
{
	if (!it_server_has(cap)) {
		print_message("[   INFO   ] skipped: microsocks cannot do this\n");
		skip();
	}
}

bool
it_have_ipv6(void)
{
	return it_ipv6;
}

static bool
it_port_free(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;
	bool ok;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

int
it_server_init(void)
{
	const char *srv = getenv("IT_SERVER");

	it_ipv6 = it_port_free(AF_INET6, 0);
	if (srv != NULL && strcmp(srv, "microsocks") == 0) {
		it_microsocks = true;
		it_server_path = getenv("IT_MICROSOCKS");
		if (it_server_path == NULL)
			it_server_path = "/usr/bin/microsocks";
	} else if (srv != NULL && *srv != '\0' && strcmp(srv, "socks5d") != 0) {
		fprintf(stderr, "IT_SERVER=%s: expected socks5d or microsocks\n", srv);
		return -1;
	} else {
		it_server_path = getenv("SOCKS5D");
		if (it_server_path == NULL || *it_server_path == '\0')
			it_server_path = "build/socks5d";
	}
	if (access(it_server_path, X_OK) != 0) {
		fprintf(stderr,
			"%s is not executable: %s (set SOCKS5D=path or "
			"IT_SERVER=microsocks)\n",
			it_server_path, strerror(errno));
		return -1;
	}
	printf("[   INFO   ] server under test: %s%s\n", it_server_path,
		it_ipv6 ? "" : " (no IPv6 loopback: IPv6 tests skipped)");
	return 0;
}

void
it_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Listening ports come from below the ephemeral range (32768+ on Linux) so
 * that the targets' and clients' ephemeral ports never take them. */
static uint16_t
it_pick_port(void)
{
	static uint64_t st;

	if (st == 0)
		st = ((uint64_t)getpid() << 32) ^ it_now_ms() ^ 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 200; i++) {
		uint8_t r[2];
		it_fill(r, sizeof(r), &st);
		uint16_t port = (uint16_t)(20000 + ((r[0] << 8 | r[1]) % 12000));
		if (it_port_free(AF_INET, port) && (!it_ipv6 || it_port_free(AF_INET6, port)))
			return port;
	}
	return 0;
}

/* fork + exec argv with stdout and stderr appended to log_path. The child
 * closes every inherited descriptor (client sockets of earlier tests must
 * not be kept open by it) and dies with the test runner. */
static pid_t
it_spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	int devnull = open("/dev/null", O_RDONLY);
	int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (devnull < 0 || logfd < 0)
		_exit(126);
	if (dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(126);
	close_range(3, ~0U, 0);
	signal(SIGPIPE, SIG_DFL);
	execv(argv[0], argv);
	_exit(127);
}

static int
it_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -1;
}

/* microsocks understands "auth none|password" and one "user"; everything
 * else in a socks5d config is either ignored (log level, timeouts: the
 * tests that need them check IT_CAP_TIMEOUTS) or makes the group
 * unsupported. */
static int
it_microsocks_args(const char *config, char user[128], char pass[128])
{
	const char *line = config;
	bool password = false;

	user[0] = pass[0] = '\0';
	while (line != NULL && *line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512];

		if (n >= sizeof(buf))
			return -1;
		memcpy(buf, line, n);
		buf[n] = '\0';
		if (strcmp(buf, "auth password") == 0) {
			password = true;
		} else if (strncmp(buf, "auth ", 5) == 0 && strcmp(buf, "auth none") != 0) {
			return 1;
		} else if (strncmp(buf, "user ", 5) == 0) {
			if (user[0] != '\0')
				return 1; /* one user only */
			if (sscanf(buf + 5, "%127s %127s", user, pass) != 2)
				return -1;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (!password)
		user[0] = pass[0] = '\0';
	return 0;
}

static bool
it_reap(pid_t *pid, int *status)
{
	if (*pid <= 0)
		return true;
	pid_t r = waitpid(*pid, status, WNOHANG);
	if (r == *pid || (r < 0 && errno == ECHILD)) {
		*pid = 0;
		return true;
	}
	return false;
}

static void
it_report_exit(const char *what, int status)
{
	if (WIFEXITED(status))
		fprintf(stderr, "[   INFO   ] %s exited with status %d\n", what,
			WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "[   INFO   ] %s died of signal %d\n", what, WTERMSIG(status));
}

bool
it_daemon_running(struct it_daemon *d)
{
	int status = 0;

	if (d->pid > 0 && it_reap(&d->pid, &status))
		it_report_exit("server", status);
	if (d->pid6 > 0 && it_reap(&d->pid6, &status))
		it_report_exit("[::1] server", status);
	return d->pid > 0 && (!it_microsocks || !it_ipv6 || d->pid6 > 0);
}

void
it_daemon_log_tail(const struct it_daemon *d, int lines)
{
	char cmd[400];

	/* Output is for a human reading a failure; tail is in coreutils. */
	fprintf(stderr, "---- last %d lines of %s ----\n", lines, d->log);
	fflush(stderr);
	snprintf(cmd, sizeof(cmd), "tail -n %d '%s' >&2", lines, d->log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log)\n");
	fprintf(stderr, "----\n");
}

bool
it_daemon_log_contains(const struct it_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[4096];
	bool found = false;

	if (f == NULL)
		return false;
	/* Lines longer than the buffer are read in pieces; a needle cut in two
	 * could be missed, but our needles are short and log lines are not. */
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static bool
it_probe(int family, uint16_t port)
{
	int fd = it_connect(family, port);

	if (fd < 0)
		return false;
	it_close(fd);
	return true;
}

/* 0 ready, -1 the server exited (port race or config error), -2 timed out. */
static int
it_wait_ready(struct it_daemon *d)
{
	uint64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;

	while (it_now_ms() < deadline) {
		if (!it_daemon_running(d))
			return -1;
		if (it_probe(AF_INET, d->port) && (!d->ipv6 || it_probe(AF_INET6, d->port)))
			return 0;
		it_sleep_ms(20);
	}
	return -2;
}

static void
it_kill_and_reap(pid_t *pid)
{
	int status;

	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	waitpid(*pid, &status, 0);
	*pid = 0;
}

static int
it_spawn_server(struct it_daemon *d, const char *config_lines)
{
	char port[8];

	snprintf(port, sizeof(port), "%u", d->port);
	if (!it_microsocks) {
		char listen6[64] = "";
		char text[16384];
		if (d->ipv6)
			snprintf(listen6, sizeof(listen6), "listen [::1]:%u\n", d->port);
		/* The port it_wait_ready probes is listed last: the daemon
		 * binds listeners in file order, so once it accepts, a
		 * group's own listeners (a PROXY protocol port, say) are
		 * bound too. */
		size_t cl = strlen(config_lines);
		int n = snprintf(text, sizeof(text),
			"# written by tests/integration/harness.c\n"
			"%s%slisten 127.0.0.1:%u\n%s",
			config_lines, cl > 0 && config_lines[cl - 1] != '\n' ? "\n" : "", d->port,
			listen6);
		if (n < 0 || (size_t)n >= sizeof(text))
			return -1;
		if (it_write_file(d->conf, text) < 0)
			return -1;
		char *argv[] = { (char *)it_server_path, "-f", d->conf, NULL };
		d->pid = it_spawn(argv, d->log);
		return d->pid > 0 ? 0 : -1;
	}

	char user[128], pass[128];
	int r = it_microsocks_args(config_lines, user, pass);
	if (r != 0)
		return r;
	if (it_write_file(d->conf, config_lines) < 0) /* for the record only */
		return -1;
	char *argv[] = { (char *)it_server_path, "-i", "127.0.0.1", "-p", port, "-u", user, "-P",
		pass, NULL };
	if (user[0] == '\0')
		argv[5] = NULL;
	d->pid = it_spawn(argv, d->log);
	if (d->pid > 0 && d->ipv6) {
		argv[2] = "::1";
		d->pid6 = it_spawn(argv, d->log);
	}
	return d->pid > 0 && (!d->ipv6 || d->pid6 > 0) ? 0 : -1;
}

static void
it_remove_dir(const struct it_daemon *d)
{
	unlink(d->conf);
	unlink(d->log);
	rmdir(d->dir);
}

int
it_daemon_start(struct it_daemon *d, const char *config_lines)
{
	memset(d, 0, sizeof(*d));
	d->ipv6 = it_ipv6;
	const char *keep = getenv("IT_KEEP");
	d->keep = keep != NULL && *keep != '\0';
	snprintf(d->dir, sizeof(d->dir), "/tmp/socks5d-it.XXXXXX");
	if (mkdtemp(d->dir) == NULL) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(d->conf, sizeof(d->conf), "%s/socks5d.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/server.log", d->dir);

	for (int attempt = 1; attempt <= IT_START_ATTEMPTS; attempt++) {
		d->port = it_pick_port();
		if (d->port == 0) {
			fprintf(stderr, "no free port found\n");
			return -1;
		}
		int r = it_spawn_server(d, config_lines);
		if (r == 1) {
			it_remove_dir(d);
			return 1;
		}
		if (r < 0) {
			fprintf(stderr, "cannot start %s: %s\n", it_server_path, strerror(errno));
			it_kill_and_reap(&d->pid);
			it_kill_and_reap(&d->pid6);
			return -1;
		}
		r = it_wait_ready(d);
		if (r == 0)
			return 0;
		it_kill_and_reap(&d->pid);
		it_kill_and_reap(&d->pid6);
		if (r == -2) {
			fprintf(stderr, "server not accepting on port %u after %d ms\n", d->port,
				IT_START_TIMEOUT_MS);
			break;
		}
		/* It exited: most likely someone took the port since we looked;
		 * a config error fails every attempt and shows in the log. */
		fprintf(stderr, "[   INFO   ] server exited during startup (attempt %d, port %u)\n",
			attempt, d->port);
	}
	d->keep = true;
	fprintf(stderr, "config %s:\n", d->conf);
	fflush(stderr);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "cat '%s' >&2", d->conf);
	if (system(cmd) != 0)
		fprintf(stderr, "(no config)\n");
	it_daemon_log_tail(d, 30);
	return -1;
}

/* 1 exited with status, 0 still running at the deadline. */
static int
it_wait_exit(pid_t pid, int *status, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR) {
			*status = -1;
			return 1;
		}
		if (it_now_ms() >= deadline)
			return 0;
		it_sleep_ms(10);
	}
}

static int
it_stop_one(pid_t *pid, const char *what)
{
	int status = 0;
	int ok = 0;

	if (*pid <= 0)
		return 0;
	kill(*pid, SIGTERM);
	if (!it_wait_exit(*pid, &status, IT_STOP_TIMEOUT_MS)) {
		fprintf(stderr, "%s (pid %d) still running %d ms after SIGTERM; sending SIGKILL\n",
			what, (int)*pid, IT_STOP_TIMEOUT_MS);
		kill(*pid, SIGKILL);
		waitpid(*pid, &status, 0);
		ok = -1;
	} else if (it_microsocks) {
		/* No handler: dying of SIGTERM is its normal exit. */
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) &&
			!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			ok = -1;
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			fprintf(stderr, "%s exited with status %d after SIGTERM (want 0)\n", what,
				WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			fprintf(stderr, "%s died of signal %d after SIGTERM (want exit 0)\n", what,
				WTERMSIG(status));
		ok = -1;
	}
	*pid = 0;
	return ok;
}

int
it_daemon_stop(struct it_daemon *d)
{
	int r = 0;

	if (d->dir[0] == '\0')
		return 0;
	if (d->pid <= 0 && d->pid6 <= 0) {
		/* Already gone: it_daemon_running() saw it die. */
		r = -1;
	}
	if (it_stop_one(&d->pid, "server") < 0)
		r = -1;
	if (it_stop_one(&d->pid6, "[::1] server") < 0)
		r = -1;
	if (r < 0) {
		d->keep = true;
		it_daemon_log_tail(d, 30);
	}
	if (d->keep)
		fprintf(stderr, "[   INFO   ] kept %s\n", d->dir);
	else
		it_remove_dir(d);
	d->dir[0] = '\0';
	return r;
}

/* ---- group fixture ----------------------------------------------------- */

int
it_fixture_start(void **state, const char *config, const char *user, const char *pass)
{
	struct it_fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	fx->user = user;
	fx->pass = pass;
	*state = fx;
	int r = it_daemon_start(&fx->d, config);
	if (r == 1) {
		/* The group's tests skip themselves through it_fx(). */
		fx->unsupported = true;
		return 0;
	}
	if (r < 0)
		return -1;
	fx->started = true;
	return 0;
}

int
it_fixture_start_for(void **state, enum it_cap cap, const char *config, const char *user,
	const char *pass)
{
	struct it_fixture *fx;

	if (it_server_has(cap))
		return it_fixture_start(state, config, user, pass);
	if ((fx = calloc(1, sizeof(*fx))) == NULL)
		return -1;
	fx->unsupported = true;
	*state = fx;
	return 0;
}

int
it_fixture_stop(void **state)
{
	struct it_fixture *fx = *state;
	int r = 0;

	if (fx == NULL)
		return 0;
	if (fx->started && it_daemon_stop(&fx->d) < 0) {
		fprintf(stderr, "[  ERROR   ] server did not exit cleanly on SIGTERM\n");
		/* cmocka 1.1.5 does not count a failed group teardown. */
		it_harness_failures++;
		r = -1;
	}
	free(fx);
	*state = NULL;
	return r;
}

struct it_fixture *
it_fx(void **state)
{
	struct it_fixture *fx = *state;

	if (fx == NULL || !fx->started) {
		print_message("[   INFO   ] skipped: this server cannot run the group's config\n");
		skip();
	}
	return fx;
}

int
it_check_alive(void **state)
{
	struct it_fixture *fx = *state;
	char err[256];
	int fd;

	/* Sockets a failed test left open would hold daemon sessions. */
	it_close_leftovers();
	it_harness_close_leftovers();
	if (fx == NULL || !fx->started)
		return 0;
	if (!it_daemon_running(&fx->d)) {
		fprintf(stderr, "[  ERROR   ] server died during the test\n");
		fx->d.keep = true;
		it_daemon_log_tail(&fx->d, 30);
		return -1;
	}
	fd = it_session_open(fx, AF_INET, &it_tg.echo4, err, sizeof(err));
	if (fd >= 0 && it_echo_check(fd, 1000, 42, err, sizeof(err)) < 0) {
		it_close(fd);
		fd = -1;
	}
	if (fd < 0) {
		fprintf(stderr, "[  ERROR   ] normal session after the test failed: %s\n", err);
		fx->d.keep = true;
		it_daemon_log_tail(&fx->d, 30);
		return -1;
	}
	it_close(fd);
	return 0;
}

/* ---- more client helpers: addresses, UDP, BIND peers, programs ---------- */

static void __attribute__((noreturn, format(printf, 3, 4)))
it_harness_fail_at(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("ERROR: %s\n", msg);
	_fail(file, line);
	abort(); /* _fail longjmps back into cmocka */
}

int
it_sockaddr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	*len = sizeof(*sin6);
	return inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1 ? 0 : -1;
}

uint16_t
it_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Sockets opened by the helpers below. client.c's table is private to it,
 * so these have their own; it_close() closes them like any fd, so an entry
 * may outlive its socket and the number be reused: each entry remembers
 * the socket's inode, and cleanup closes only a number that still holds
 * that same socket. */
#define IT_HARNESS_MAX_OPEN 256

static struct {
	int fd; /* 0: free slot */
	dev_t dev;
	ino_t ino;
} it_harness_open[IT_HARNESS_MAX_OPEN];

static void
it_harness_track(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return;
	for (size_t i = 0; i < IT_HARNESS_MAX_OPEN; i++) {
		if (it_harness_open[i].fd == 0 || it_harness_open[i].fd == fd) {
			it_harness_open[i].fd = fd;
			it_harness_open[i].dev = st.st_dev;
			it_harness_open[i].ino = st.st_ino;
			return;
		}
	}
}

/* Closes what a failed test left open of the sockets above. */
static void
it_harness_close_leftovers(void)
{
	for (size_t i = 0; i < IT_HARNESS_MAX_OPEN; i++) {
		struct stat st;
		int fd = it_harness_open[i].fd;

		if (fd == 0)
			continue;
		if (fstat(fd, &st) == 0 && st.st_dev == it_harness_open[i].dev &&
			st.st_ino == it_harness_open[i].ino)
			close(fd);
		it_harness_open[i].fd = 0;
	}
}

int
it_connect_addr(const char *ip, uint16_t port, const char *src_ip)
{
	struct sockaddr_storage ss, src;
	socklen_t len, slen;
	struct timeval tv = { .tv_sec = 10 };
	int one = 1, err = 0, fd, fl;

	if (it_sockaddr(ip, port, &ss, &len) < 0) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (src_ip != NULL &&
		(it_sockaddr(src_ip, 0, &src, &slen) < 0 ||
			bind(fd, (struct sockaddr *)&src, slen) < 0))
		goto fail;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		socklen_t elen = sizeof(err);

		if (errno != EINPROGRESS)
			goto fail;
		if (poll(&pfd, 1, 2000) != 1) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			goto fail;
		if (err != 0) {
			errno = err;
			goto fail;
		}
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	it_harness_track(fd);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
it_udp_socket(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, size = 4 << 20;

	if (it_sockaddr(ip, port, &ss, &len) < 0) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Room for every datagram a test has in flight (capped at rmem_max). */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	it_harness_track(fd);
	return fd;
}

int
it_udp_send(int fd, const char *ip, uint16_t port, const void *p, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	ssize_t w;

	if (it_sockaddr(ip, port, &ss, &len) < 0) {
		errno = EINVAL;
		return -1;
	}
	do
		w = sendto(fd, p, n, MSG_NOSIGNAL, (struct sockaddr *)&ss, len);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -1;
	if ((size_t)w != n) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

long
it_udp_recv(int fd, void *p, size_t cap, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		uint64_t now = it_now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -1;
		if (pr == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ssize_t r = recv(fd, p, cap, MSG_DONTWAIT | MSG_TRUNC);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		/* ECONNREFUSED: an ICMP error for an earlier datagram, not
		 * one of ours; report it like any other error. */
		return r < 0 ? -1 : (long)r;
	}
}

/* One direction of it_exchange: what is left to send, and what arrived. */
struct it_flow {
	int from, to;
	uint64_t st; /* sender's stream state */
	size_t sent, got;
	uint8_t buf[65536]; /* next chunk to send, from buf_off */
	size_t buf_off, buf_len;
	struct it_hash hs; /* of what arrived */
};

static int
it_flow_send(struct it_flow *f, size_t n)
{
	if (f->buf_off == f->buf_len) {
		size_t k = n - f->sent < sizeof(f->buf) ? n - f->sent : sizeof(f->buf);
		it_fill(f->buf, k, &f->st); /* 65536-byte chunks keep the stream uncut */
		f->buf_off = 0;
		f->buf_len = k;
	}
	ssize_t w = send(f->from, f->buf + f->buf_off, f->buf_len - f->buf_off,
		MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	f->buf_off += (size_t)w;
	f->sent += (size_t)w;
	return 0;
}

static int
it_flow_recv(struct it_flow *f)
{
	uint8_t in[65536];
	ssize_t r = recv(f->to, in, sizeof(in), MSG_DONTWAIT);

	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (r == 0) {
		errno = 0;
		return -1;
	}
	it_hash_update(&f->hs, in, (size_t)r);
	f->got += (size_t)r;
	return 0;
}

int
it_exchange(int fd_a, int fd_b, size_t n, uint64_t seed_a, uint64_t seed_b, int timeout_ms,
	char *err, size_t errlen)
{
	static struct it_flow flows[2]; /* 128 KiB of buffers: not on the stack */
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	memset(flows, 0, sizeof(flows));
	flows[0].from = fd_a;
	flows[0].to = fd_b;
	flows[0].st = seed_a;
	flows[1].from = fd_b;
	flows[1].to = fd_a;
	flows[1].st = seed_b;
	it_hash_init(&flows[0].hs);
	it_hash_init(&flows[1].hs);
	while (flows[0].got < n || flows[1].got < n) {
		uint64_t now = it_now_ms();
		struct pollfd pfd[2];

		if (now >= deadline) {
			snprintf(err, errlen,
				"exchange: timed out after %d ms: "
				"a->b sent %zu got %zu, b->a sent %zu got %zu of %zu",
				timeout_ms, flows[0].sent, flows[0].got, flows[1].sent,
				flows[1].got, n);
			return -1;
		}
		/* pfd[0] is fd_a: it sends flow 0 and receives flow 1. */
		pfd[0] = (struct pollfd){ .fd = fd_a,
			.events = (short)((flows[0].sent < n ? POLLOUT : 0) |
				(flows[1].got < n ? POLLIN : 0)) };
		pfd[1] = (struct pollfd){ .fd = fd_b,
			.events = (short)((flows[1].sent < n ? POLLOUT : 0) |
				(flows[0].got < n ? POLLIN : 0)) };
		for (int side = 0; side < 2; side++)
			if (pfd[side].events == 0)
				pfd[side].fd = -1; /* done: its HUP must not spin us */
		int pr = poll(pfd, 2, (int)(deadline - now));
		if (pr < 0 && errno != EINTR) {
			snprintf(err, errlen, "exchange: poll: %s", strerror(errno));
			return -1;
		}
		if (pr <= 0)
			continue;
		for (int side = 0; side < 2; side++) {
			struct it_flow *out = &flows[side], *in = &flows[1 - side];
			short ev = pfd[side].revents;

			if ((ev & POLLOUT) && out->sent < n && it_flow_send(out, n) < 0) {
				snprintf(err, errlen, "exchange: send on side %c: %s", "ab"[side],
					strerror(errno));
				return -1;
			}
			if ((ev & (POLLIN | POLLHUP | POLLERR)) && in->got < n &&
				it_flow_recv(in) < 0) {
				snprintf(err, errlen,
					"exchange: side %c got %zu of %zu bytes, then %s",
					"ab"[side], in -> got, n, errno ? strerror(errno) : "EOF");
				return -1;
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		uint64_t want = it_stream_hash(i == 0 ? seed_a : seed_b, n);
		if (flows[i].hs.h != want) {
			snprintf(err, errlen,
				"exchange: %s: %zu bytes arrived altered "
				"(hash %016llx, want %016llx)",
				i == 0 ? "a->b" : "b->a", n, (unsigned long long)flows[i].hs.h,
				(unsigned long long)want);
			return -1;
		}
	}
	return 0;
}

int
it_greet_at(const struct it_fixture *fx, int family, const char *file, int line)
{
	int fd = it_connect(family, fx->d.port);
	uint8_t msg[600], got[2];
	size_t n = 0;

	if (fd < 0)
		it_harness_fail_at(file, line, "connect to the daemon: %s", strerror(errno));
	if (fx->user == NULL) {
		const uint8_t greet[] = { 0x05, 0x01, 0x00 };
		if (it_send_all(fd, greet, sizeof(greet)) < 0 ||
			it_recv_exact(fd, got, 2, IT_IO_TIMEOUT_MS) != 2 || got[0] != 0x05 ||
			got[1] != 0x00)
			it_harness_fail_at(file, line, "greeting 05 01 00: want 05 00");
		return fd;
	}
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	size_t ul = strlen(fx->user), pl = strlen(fx->pass);
	if (it_send_all(fd, greet, sizeof(greet)) < 0 ||
		it_recv_exact(fd, got, 2, IT_IO_TIMEOUT_MS) != 2 || got[0] != 0x05 ||
		got[1] != 0x02)
		it_harness_fail_at(file, line, "greeting 05 01 02: want 05 02");
	msg[n++] = 0x01;
	msg[n++] = (uint8_t)ul;
	memcpy(msg + n, fx->user, ul);
	n += ul;
	msg[n++] = (uint8_t)pl;
	memcpy(msg + n, fx->pass, pl);
	n += pl;
	if (it_send_all(fd, msg, n) < 0 || it_recv_exact(fd, got, 2, IT_IO_TIMEOUT_MS) != 2 ||
		got[0] != 0x01 || got[1] != 0x00)
		it_harness_fail_at(file, line, "password auth for %s: want 01 00", fx->user);
	return fd;
}

void
it_expect_reply_at(int fd, struct it_reply *r, int timeout_ms, const char *file, int line)
{
	char err[256];

	if (it_read_reply(fd, r, timeout_ms, err, sizeof(err)) < 0)
		it_harness_fail_at(file, line, "%s", err);
}

int
it_run_program(char *const argv[], int timeout_ms, struct it_hash *out)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	int pfd[2], status;
	bool eof = false;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0)
			_exit(126);
		/* Test sockets must not be kept open by the program. */
		close_range(3, ~0U, 0);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	if (out != NULL)
		it_hash_init(out);
	while (!eof) {
		uint64_t now = it_now_ms();
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		uint8_t buf[65536];

		if (now >= deadline)
			break;
		int pr = poll(&p, 1, (int)(deadline - now));
		if (pr < 0 && errno != EINTR)
			break;
		if (pr <= 0)
			continue;
		ssize_t r = read(pfd[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			eof = true;
		else if (out != NULL)
			it_hash_update(out, buf, (size_t)r);
	}
	close(pfd[0]);
	if (!eof ||
		!it_wait_exit(pid, &status,
			it_now_ms() < deadline ? (int)(deadline - it_now_ms()) : 0)) {
		fprintf(stderr, "[   INFO   ] %s still running after %d ms: killed\n", argv[0],
			timeout_ms);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

bool
it_find_program(const char *name, char *path, size_t cap)
{
	const char *dirs = getenv("PATH");

	if (dirs == NULL)
		dirs = "/usr/bin:/bin";
	while (*dirs != '\0') {
		size_t n = strcspn(dirs, ":");
		int w = snprintf(path, cap, "%.*s/%s", (int)n, dirs, name);
		if (n > 0 && w > 0 && (size_t)w < cap && access(path, X_OK) == 0)
			return true;
		dirs += n;
		if (*dirs == ':')
			dirs++;
	}
	if (cap > 0)
		path[0] = '\0';
	return false;
}

bool
it_host_ipv4(struct sockaddr_in *out)
{
	struct ifaddrs *list, *i;
	bool found = false;

	if (getifaddrs(&list) < 0)
		return false;
	for (i = list; i && !found; i = i->ifa_next) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(void *)i->ifa_addr;
		if (!a || a->sin_family != AF_INET || (ntohl(a->sin_addr.s_addr) >> 24) == 127)
			continue;
		*out = *a;
		out->sin_port = 0;
		found = true;
	}
	freeifaddrs(list);
	return found;
}

bool
it_slow(void)
{
	const char *v = getenv("IT_SLOW");

	return v && *v && strcmp(v, "0") != 0;
}
