/*
 * systemd integration (issue 7) against the real daemon: sd_notify messages
 * on a NOTIFY_SOCKET we bind (READY=1 only once the listener accepts,
 * RELOADING=1 with MONOTONIC_USEC around a reload, STOPPING=1, WATCHDOG=1 at
 * half of WATCHDOG_USEC), socket activation (LISTEN_FDS/LISTEN_PID with a
 * listener the test made), SIGHUP reload (users, timeouts, listeners, a
 * broken file that leaves the running configuration alone, established
 * sessions untouched), graceful SIGTERM (in-flight transfer completes, new clients
 * refused, exit 0, shutdown-timeout) and `-t`/`-T`.
 *
 * These tests need the environment and descriptors of the daemon under
 * their control, so each one starts its own daemon with it_sd_start()
 * below instead of the harness's group fixture. Every daemon gets a
 * NOTIFY_SOCKET, and start waits for READY=1, so every test also checks
 * that readiness is announced. microsocks has none of this: skipped.
 */
#include "harness.h"

#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IT_SD_READY_TIMEOUT_MS 5000
#define IT_SD_MAX_MSGS 512
#define IT_SD_MAX_ENV 8

/* One test's daemon. fx comes first: it_fx() and it_check_alive() take the
 * cmocka state as a struct it_fixture. */
struct it_sd {
	struct it_fixture fx;
	uint16_t port2, port3;          /* {Q} and {R} in config templates */
	int notify_fd;                  /* our end of NOTIFY_SOCKET, or -1 */
	char notify_name[108];          /* "@..." (abstract) or a path */
	char notify_dir[64];            /* holds a path notify socket, or "" */
	bool notify_path;               /* next start: a path, not an abstract name */
	char msgs[IT_SD_MAX_MSGS][512]; /* every notify datagram received */
	size_t nmsgs;
	size_t next_msg; /* first one no wait has matched yet */
};

static const char *
it_sd_server_path(void)
{
	const char *p = getenv("SOCKS5D");

	return p != NULL && *p != '\0' ? p : "build/socks5d";
}

/* ---- ports and config templates ---------------------------------------- */

static bool
it_sd_port_free(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* Below the ephemeral range, as the harness does, so that client and
 * target sockets never take the port between the pick and the bind. */
static uint16_t
it_sd_pick_port(void)
{
	static uint64_t st;

	if (st == 0)
		st = ((uint64_t)getpid() << 20) ^ it_now_ms() ^ 0x5d5d5d5d5dULL;
	for (int i = 0; i < 200; i++) {
		uint8_t r[2];
		it_fill(r, sizeof(r), &st);
		uint16_t port = (uint16_t)(20000 + ((r[0] << 8 | r[1]) % 12000));
		if (it_sd_port_free(port))
			return port;
	}
	return 0;
}

/* Expands {P} {Q} {R} in tmpl to the three ports and writes the config. */
static void
it_sd_write_conf(const struct it_sd *s, const char *tmpl)
{
	FILE *f = fopen(s->fx.d.conf, "w");

	assert_non_null(f);
	for (const char *c = tmpl; *c != '\0'; c++) {
		if (c[0] == '{' && c[1] != '\0' && c[2] == '}' && strchr("PQR", c[1]) != NULL) {
			uint16_t p = c[1] == 'P' ? s->fx.d.port : c[1] == 'Q' ? s->port2 : s->port3;
			fprintf(f, "%u", p);
			c += 2;
		} else {
			fputc(*c, f);
		}
	}
	assert_int_equal(fclose(f), 0);
}

/* ---- notify socket ----------------------------------------------------- */

static void
it_sd_notify_close(struct it_sd *s)
{
	if (s->notify_fd >= 0)
		close(s->notify_fd);
	s->notify_fd = -1;
	if (s->notify_dir[0] != '\0') {
		unlink(s->notify_name);
		rmdir(s->notify_dir);
		s->notify_dir[0] = '\0';
	}
	s->nmsgs = s->next_msg = 0;
}

/* Binds our end of NOTIFY_SOCKET: an abstract name, or a path in a new
 * temp dir when s->notify_path. */
static int
it_sd_notify_open(struct it_sd *s)
{
	static unsigned counter;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len;

	s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->notify_fd < 0)
		return -1;
	if (s->notify_path) {
		snprintf(s->notify_dir, sizeof(s->notify_dir), "/tmp/socks5d-it-notify.XXXXXX");
		if (mkdtemp(s->notify_dir) == NULL) {
			s->notify_dir[0] = '\0';
			return -1;
		}
		snprintf(s->notify_name, sizeof(s->notify_name), "%s/notify", s->notify_dir);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", s->notify_name);
		len = sizeof(sun);
	} else {
		snprintf(s->notify_name, sizeof(s->notify_name), "@socks5d-it-%d-%u", (int)getpid(),
			counter++);
		size_t n = strlen(s->notify_name);
		memcpy(sun.sun_path, s->notify_name, n);
		sun.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	return bind(s->notify_fd, (struct sockaddr *)&sun, len);
}

/* Receives one datagram within timeout_ms into the message list. 1 got
 * one, 0 timed out. */
static int
it_sd_notify_recv(struct it_sd *s, int timeout_ms)
{
	struct pollfd pfd = { .fd = s->notify_fd, .events = POLLIN };
	char buf[512];
	ssize_t r;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	r = recv(s->notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	if (r < 0)
		return 0;
	buf[r] = '\0';
	if (s->nmsgs == IT_SD_MAX_MSGS)
		fail_msg("more than %d notify messages: flooding?", IT_SD_MAX_MSGS);
	memcpy(s->msgs[s->nmsgs++], buf, (size_t)r + 1);
	return 1;
}

static void
it_sd_dump_msgs(const struct it_sd *s)
{
	print_message("[   INFO   ] notify messages so far (%zu):\n", s->nmsgs);
	for (size_t i = 0; i < s->nmsgs && i < 40; i++) {
		char one[512];
		snprintf(one, sizeof(one), "%s", s->msgs[i]);
		for (char *c = one; *c != '\0'; c++)
			if (*c == '\n')
				*c = '|';
		print_message("             %zu: %s\n", i, one);
	}
}

/* The first message at or after next_msg containing needle, waiting up to
 * timeout_ms for it; messages skipped over stay in the list. Returns its
 * index (and moves next_msg past it) or -1. */
static long
it_sd_wait_msg(struct it_sd *s, const char *needle, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	size_t i = s->next_msg;

	for (;;) {
		for (; i < s->nmsgs; i++) {
			if (strstr(s->msgs[i], needle) != NULL) {
				s->next_msg = i + 1;
				return (long)i;
			}
		}
		uint64_t now = it_now_ms();
		if (now >= deadline)
			return -1;
		(void)it_sd_notify_recv(s, (int)(deadline - now));
	}
}

#define it_sd_expect_msg(s, needle, ms) it_sd_expect_msg_at(s, needle, ms, __LINE__)

static long
it_sd_expect_msg_at(struct it_sd *s, const char *needle, int timeout_ms, int line)
{
	long i = it_sd_wait_msg(s, needle, timeout_ms);

	if (i < 0) {
		it_sd_dump_msgs(s);
		fail_msg("line %d: no notify message with \"%s\" within %d ms", line, needle,
			timeout_ms);
	}
	return i;
}

/* ---- the daemon -------------------------------------------------------- */

/* Child side of it_sd_spawn: descriptors, environment, exec. env entries
 * are NAME=VALUE; a VALUE of "$$" becomes the daemon's own pid (which only
 * the child knows before exec), as systemd does for LISTEN_PID. */
static void __attribute__((noreturn))
it_sd_child(struct it_sd *s, const char *const *env, int inherit_fd)
{
	int keep = -1;

	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* Out of the way first: the opens below could land on fd 3. */
	if (inherit_fd >= 0 && (keep = fcntl(inherit_fd, F_DUPFD, 100)) < 0)
		_exit(126);
	int devnull = open("/dev/null", O_RDONLY);
	int logfd = open(s->fx.d.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (devnull < 0 || logfd < 0)
		_exit(126);
	if (dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(126);
	if (keep >= 0) {
		if (dup2(keep, 3) < 0) /* dup2 leaves the copy without FD_CLOEXEC */
			_exit(126);
		close_range(4, ~0U, 0);
	} else {
		close_range(3, ~0U, 0);
	}
	signal(SIGPIPE, SIG_DFL);
	/* The runner may itself run under systemd: only what the test says. */
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("JOURNAL_STREAM");
	setenv("NOTIFY_SOCKET", s->notify_name, 1);
	for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
		char name[64], value[64];
		const char *eq = strchr(env[i], '=');
		if (eq == NULL || (size_t)(eq - env[i]) >= sizeof(name))
			_exit(126);
		memcpy(name, env[i], (size_t)(eq - env[i]));
		name[eq - env[i]] = '\0';
		if (strcmp(eq + 1, "$$") == 0)
			snprintf(value, sizeof(value), "%d", (int)getpid());
		else
			snprintf(value, sizeof(value), "%s", eq + 1);
		setenv(name, value, 1);
	}
	char *argv[] = { (char *)it_sd_server_path(), "-f", s->fx.d.conf, NULL };
	execv(argv[0], argv);
	_exit(127);
}

static void
it_sd_remove_dir(struct it_daemon *d)
{
	if (d->dir[0] == '\0')
		return;
	if (d->keep) {
		print_message("[   INFO   ] kept %s\n", d->dir);
	} else {
		unlink(d->conf);
		unlink(d->log);
		rmdir(d->dir);
	}
	d->dir[0] = '\0';
}

/* Starts the daemon with config tmpl ({P} {Q} {R}: three free ports, {P}
 * being fx.d.port, which a caller may set beforehand, e.g. to the port of
 * the socket it passes), the extra environment env, and inherit_fd (>= 0)
 * as descriptor 3. Waits for READY=1 and then requires that port {P}
 * accepts at once: readiness must mean the listeners are bound. Fails the
 * test on any problem. fx.user/fx.pass are left to the caller. */
static void
it_sd_start_fds(struct it_sd *s, const char *tmpl, const char *const *env, int inherit_fd)
{
	struct it_daemon *d = &s->fx.d;
	const char *keep = getenv("IT_KEEP");

	if (it_is_microsocks()) {
		print_message("[   INFO   ] skipped: microsocks has no systemd integration\n");
		skip();
	}
	uint16_t inherited_port = d->port;
	memset(d, 0, sizeof(*d));
	d->port = inherited_port;
	d->keep = keep != NULL && *keep != '\0';
	snprintf(d->dir, sizeof(d->dir), "/tmp/socks5d-it.XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(d->conf, sizeof(d->conf), "%s/socks5d.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/server.log", d->dir);
	/* A caller passing its socket as {P} set the port already. */
	if (d->port == 0)
		d->port = it_sd_pick_port();
	s->port2 = it_sd_pick_port();
	do
		s->port3 = it_sd_pick_port();
	while (s->port3 == s->port2);
	if (d->port == 0 || s->port2 == 0 || s->port3 == 0 || s->port2 == d->port ||
		s->port3 == d->port)
		fail_msg("no free ports");
	it_sd_write_conf(s, tmpl);
	if (it_sd_notify_open(s) < 0)
		fail_msg("notify socket %s: %s", s->notify_name, strerror(errno));
	d->pid = fork();
	if (d->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (d->pid == 0)
		it_sd_child(s, env, inherit_fd);
	s->fx.started = true;
	if (it_sd_wait_msg(s, "READY=1", IT_SD_READY_TIMEOUT_MS) < 0) {
		d->keep = true;
		bool running = it_daemon_running(d);
		it_sd_dump_msgs(s);
		it_daemon_log_tail(d, 30);
		fail_msg("no READY=1 within %d ms of starting (daemon %s)", IT_SD_READY_TIMEOUT_MS,
			running ? "running" : "exited");
	}
	int fd = it_connect(AF_INET, d->port);
	if (fd < 0)
		fail_msg("READY=1 came but 127.0.0.1:%u does not accept: %s", d->port,
			strerror(errno));
	it_close(fd);
}

static void
it_sd_start(struct it_sd *s, const char *tmpl, const char *const *env)
{
	it_sd_start_fds(s, tmpl, env, -1);
}

/* Bounded wait for the daemon to exit; reaps it. Returns its wait status, or
 * -1 when it was still running at the deadline. */
static int
it_sd_wait_exit(struct it_sd *s, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(s->fx.d.pid, &status, WNOHANG);
		if (r == s->fx.d.pid) {
			s->fx.d.pid = 0;
			s->fx.started = false;
			return status;
		}
		if (r < 0 && errno != EINTR)
			fail_msg("waitpid: %s", strerror(errno));
		if (it_now_ms() >= deadline)
			return -1;
		it_sleep_ms(5);
	}
}

/* Requires exit status 0 within timeout_ms. */
static void
it_sd_expect_exit_0(struct it_sd *s, int timeout_ms, const char *what)
{
	int st = it_sd_wait_exit(s, timeout_ms);

	if (st == -1) {
		s->fx.d.keep = true;
		it_daemon_log_tail(&s->fx.d, 20);
		fail_msg("%s: daemon still running %d ms later", what, timeout_ms);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		s->fx.d.keep = true;
		it_daemon_log_tail(&s->fx.d, 20);
		if (WIFSIGNALED(st))
			fail_msg("%s: daemon died of signal %d, want exit 0", what, WTERMSIG(st));
		fail_msg("%s: daemon exited %d, want 0", what, WEXITSTATUS(st));
	}
}

/* SIGHUP, then the RELOADING=1 ... READY=1 pair. Returns the READY message's
 * index (a failed reload's READY=1 carries STATUS=reload failed). */
static long
it_sd_reload(struct it_sd *s, const char *tmpl)
{
	it_sd_write_conf(s, tmpl);
	assert_int_equal(kill(s->fx.d.pid, SIGHUP), 0);
	it_sd_expect_msg(s, "RELOADING=1", 5000);
	return it_sd_expect_msg(s, "READY=1", 5000);
}

static int
it_sd_group_setup(void **state)
{
	struct it_sd *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -1;
	s->notify_fd = -1;
	*state = s;
	return 0;
}

static int
it_sd_group_teardown(void **state)
{
	free(*state);
	*state = NULL;
	return 0;
}

/* After every test: a daemon still meant to run must serve a normal session
 * and then exit 0 on SIGTERM; everything is reset for the next test. */
static int
it_sd_teardown(void **state)
{
	struct it_sd *s = *state;
	int r = 0;

	if (s->fx.started) {
		if (it_check_alive(state) < 0)
			r = -1;
		if (it_daemon_stop(&s->fx.d) < 0) {
			fprintf(stderr, "[  ERROR   ] daemon did not exit 0 on SIGTERM\n");
			r = -1;
		}
	} else {
		it_close_leftovers();
		if (s->fx.d.pid > 0) {
			kill(s->fx.d.pid, SIGKILL);
			waitpid(s->fx.d.pid, NULL, 0);
		}
		it_sd_remove_dir(&s->fx.d);
	}
	it_sd_notify_close(s);
	memset(s, 0, sizeof(*s));
	s->notify_fd = -1;
	return r;
}

#define IT_SD_TEST(f) cmocka_unit_test_teardown(f, it_sd_teardown)

/* The fixture with another listening port (and credentials). */
static struct it_fixture
it_sd_via(const struct it_sd *s, uint16_t port, const char *user, const char *pass)
{
	struct it_fixture fx = s->fx;

	fx.d.port = port;
	fx.user = user;
	fx.pass = pass;
	return fx;
}

/* Connects and authenticates as user/pass; requires a refusal status and a
 * close. */
static void
it_sd_expect_auth_refused(uint16_t port, const char *user, const char *pass)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
	uint8_t msg[600], st[2];
	size_t n = 0, ul = strlen(user), pl = strlen(pass);
	int fd = it_connect(AF_INET, port);

	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	msg[n++] = 0x01;
	msg[n++] = (uint8_t)ul;
	memcpy(msg + n, user, ul);
	n += ul;
	msg[n++] = (uint8_t)pl;
	memcpy(msg + n, pass, pl);
	n += pl;
	it_send_bytes(fd, msg, n);
	if (it_recv_exact(fd, st, 2, IT_IO_TIMEOUT_MS) != 2)
		fail_msg("no auth status for %s", user);
	if (st[0] != 0x01 || st[1] == 0x00)
		fail_msg("auth status %02x %02x for %s: want 01 and a refusal", st[0], st[1], user);
	it_expect_close(fd, 2000);
	it_close(fd);
}

/* Until port refuses connections (bounded): a listener closed by the
 * daemon. A connect that still gets through is closed at once. */
static bool
it_sd_wait_refused(uint16_t port, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		int fd = it_connect(AF_INET, port);
		if (fd < 0 && errno == ECONNREFUSED)
			return true;
		if (fd >= 0)
			it_close(fd);
		if (it_now_ms() >= deadline)
			return false;
		it_sleep_ms(10);
	}
}

/* ---- sd_notify ---------------------------------------------------------- */

static void
test_ready_on_path_socket_after_listen_then_status(void **state)
{
	struct it_sd *s = *state;

	/* it_sd_start waits for READY=1 and then connects without retrying:
	 * READY=1 before the listener is bound would fail there. */
	s->notify_path = true;
	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", NULL);
	if (strcmp(s->msgs[0], "READY=1") != 0) {
		it_sd_dump_msgs(s);
		fail_msg("first notify message is not exactly READY=1");
	}
	long st = it_sd_expect_msg(s, "STATUS=", 2000);
	assert_int_equal(st, 1); /* right after READY=1 */
	if (strncmp(s->msgs[st], "STATUS=", 7) != 0 || strlen(s->msgs[st]) < 8)
		fail_msg("want a non-empty STATUS=..., got \"%s\"", s->msgs[st]);
}

static void
test_abstract_socket_gets_reloading_with_monotonic_usec_then_ready(void **state)
{
	struct it_sd *s = *state;
	struct timespec ts;

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", NULL);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t before = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	long ready = it_sd_reload(s, "listen 127.0.0.1:{P}\nauth none\nlog-level debug\n");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t after = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	/* systemd's Type=notify-reload protocol: RELOADING=1 carries the
	 * CLOCK_MONOTONIC time in µs, and READY=1 alone closes the reload. */
	const char *rl = NULL;
	for (size_t i = 0; i < (size_t)ready; i++)
		if (strstr(s->msgs[i], "RELOADING=1") != NULL)
			rl = s->msgs[i];
	assert_non_null(rl);
	const char *mu = strstr(rl, "\nMONOTONIC_USEC=");
	if (strncmp(rl, "RELOADING=1", 11) != 0 || mu == NULL)
		fail_msg("want RELOADING=1\\nMONOTONIC_USEC=<n>, got \"%s\"", rl);
	unsigned long long usec = strtoull(mu + 16, NULL, 10);
	if (usec < before || usec > after)
		fail_msg("MONOTONIC_USEC=%llu is not between %llu and %llu (our clock around "
			 "the reload)",
			usec, (unsigned long long)before, (unsigned long long)after);
	if (strcmp(s->msgs[ready], "READY=1") != 0)
		fail_msg("after a valid reload want exactly READY=1, got \"%s\"", s->msgs[ready]);
}

static void
test_sigterm_sends_stopping_and_exits_0(void **state)
{
	struct it_sd *s = *state;

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", NULL);
	assert_int_equal(kill(s->fx.d.pid, SIGTERM), 0);
	long i = it_sd_expect_msg(s, "STOPPING=1", 3000);
	if (strncmp(s->msgs[i], "STOPPING=1", 10) != 0)
		fail_msg("want STOPPING=1, got \"%s\"", s->msgs[i]);
	it_sd_expect_exit_0(s, 3000, "idle daemon after SIGTERM");
}

/* Counts WATCHDOG=1 messages over ms. */
static unsigned
it_sd_count_watchdog(struct it_sd *s, int ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)ms;
	unsigned n = 0;
	uint64_t now;

	while ((now = it_now_ms()) < deadline) {
		if (it_sd_wait_msg(s, "WATCHDOG=1", (int)(deadline - now)) >= 0)
			n++;
	}
	return n;
}

static void
test_watchdog_sent_at_half_of_watchdog_usec(void **state)
{
	struct it_sd *s = *state;
	const char *env[] = { "WATCHDOG_USEC=200000", "WATCHDOG_PID=$$", NULL };

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", env);
	/* 200 ms -> every 100 ms: about 10 in a second. */
	unsigned n = it_sd_count_watchdog(s, 1000);
	print_message("[   INFO   ] %u WATCHDOG=1 in 1000 ms (WATCHDOG_USEC=200000)\n", n);
	if (n < 6 || n > 14)
		fail_msg("%u WATCHDOG=1 in 1 s, want about 10 (every 100 ms)", n);
	/* Sent from the event loop: it keeps coming while sessions run. */
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 65536, 7);
	n = it_sd_count_watchdog(s, 500);
	it_expect_echo(fd, 65536, 8);
	it_close(fd);
	if (n < 3)
		fail_msg("%u WATCHDOG=1 in 500 ms with a session open, want about 5", n);
}

static void
test_watchdog_for_another_pid_is_not_sent(void **state)
{
	struct it_sd *s = *state;
	/* systemd sets WATCHDOG_PID to the main pid; a child that inherits it
	 * must stay silent. pid 1 is never the daemon. */
	const char *env[] = { "WATCHDOG_USEC=100000", "WATCHDOG_PID=1", NULL };

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", env);
	unsigned n = it_sd_count_watchdog(s, 500);
	if (n != 0)
		fail_msg("%u WATCHDOG=1 with WATCHDOG_PID=1, want none", n);
}

/* ---- socket activation -------------------------------------------------- */

/* A listening socket on ip at a free port, as systemd would pass. */
static int
it_sd_activation_socket_on(uint32_t ip, uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int one = 1;

	for (int i = 0; i < 20; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		*port = it_sd_pick_port();
		sin.sin_port = htons(*port);
		sin.sin_addr.s_addr = htonl(ip);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(fd, 128) == 0)
			return fd;
		close(fd);
	}
	fail_msg("cannot make a listening socket");
	return -1;
}

static int
it_sd_activation_socket(uint16_t *port)
{
	return it_sd_activation_socket_on(INADDR_LOOPBACK, port);
}

/* Issue 17: a reload that would turn an inherited listener reachable from
 * other hosts into an open proxy is refused like a broken file, and the
 * running configuration (with its client rule) stays. */
static void
test_reload_refuses_to_open_an_inherited_listener(void **state)
{
	struct it_sd *s = *state;
	const char *env[] = { "LISTEN_FDS=1", "LISTEN_PID=$$", NULL };
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	int lfd = it_sd_activation_socket_on(INADDR_ANY, &s->fx.d.port);
	enum it_close how;
	int fd;

	it_sd_start_fds(s, "client allow 127.0.0.1\nauth none\n", env, lfd);
	close(lfd);
	it_sd_write_conf(s, "auth none\n");
	assert_int_equal(kill(s->fx.d.pid, SIGHUP), 0);
	it_sd_expect_msg(s, "STATUS=reload failed", 5000);
	if (!it_daemon_log_contains(&s->fx.d, "open proxy")) {
		it_daemon_log_tail(&s->fx.d, 20);
		fail_msg("the refused reload does not say why");
	}
	/* The client rule still holds: 127.0.0.2 is closed without a reply. */
	fd = it_connect_addr("127.0.0.1", s->fx.d.port, "127.0.0.2");
	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	how = it_wait_close(fd, IT_IO_TIMEOUT_MS);
	if (how != IT_CLOSE_EOF && how != IT_CLOSE_RST)
		fail_msg("client 127.0.0.2 after the refused reload: %s, want closed",
			it_close_str(how));
	it_close(fd);
	fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 4096, 64);
	it_close(fd);
}

static void
test_socket_activation_serves_inherited_socket_without_default_listener(void **state)
{
	struct it_sd *s = *state;
	const char *env[] = { "LISTEN_FDS=1", "LISTEN_PID=$$", NULL };
	int lfd = it_sd_activation_socket(&s->fx.d.port);

	/* No listen line: the built-in 127.0.0.1:1080 must not be added. */
	it_sd_start_fds(s, "auth none\nlog-level debug\n", env, lfd);
	/* Only the daemon holds the socket now: every accept is its own. */
	close(lfd);
	for (int i = 0; i < 3; i++) {
		int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
		it_expect_echo(fd, 4096, 60 + (uint64_t)i);
		it_close(fd);
	}
	if (!it_daemon_log_contains(&s->fx.d, "socket activation")) {
		it_daemon_log_tail(&s->fx.d, 20);
		fail_msg("log does not say the inherited socket is used");
	}
	if (it_daemon_log_contains(&s->fx.d, ":1080")) {
		it_daemon_log_tail(&s->fx.d, 20);
		fail_msg("with LISTEN_FDS and no listen line the default :1080 was opened");
	}
}

static void
test_socket_activation_with_listen_lines_reuses_same_address(void **state)
{
	struct it_sd *s = *state;
	const char *env[] = { "LISTEN_FDS=1", "LISTEN_PID=$$", NULL };
	int lfd = it_sd_activation_socket(&s->fx.d.port);

	/* {P} is the inherited socket's address: binding it again would fail
	 * with EADDRINUSE, so a daemon that reaches READY=1 reused it. {Q} is
	 * opened by the daemon. */
	it_sd_start_fds(s, "listen 127.0.0.1:{P}\nlisten 127.0.0.1:{Q}\nauth none\n", env, lfd);
	close(lfd);
	struct it_fixture q = it_sd_via(s, s->port2, NULL, NULL);
	int a = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	int b = it_open_tunnel(&q, AF_INET, &it_tg.echo4);
	it_expect_echo(a, 4096, 61);
	it_expect_echo(b, 4096, 62);
	it_close(a);
	it_close(b);
	/* A reload that drops {P}'s line cannot drop the inherited socket:
	 * the daemon could not get it back. */
	long ready = it_sd_reload(s, "listen 127.0.0.1:{Q}\nauth none\n");
	assert_string_equal(s->msgs[ready], "READY=1");
	a = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(a, 4096, 63);
	it_close(a);
	b = it_open_tunnel(&q, AF_INET, &it_tg.echo4);
	it_close(b);
}

static void
test_listen_fds_for_another_pid_are_ignored(void **state)
{
	struct it_sd *s = *state;
	const char *env[] = { "LISTEN_FDS=1", "LISTEN_PID=1", NULL };
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	uint16_t inherited_port;
	int lfd = it_sd_activation_socket(&inherited_port);

	/* The daemon gets the socket as fd 3 but LISTEN_PID names another
	 * process: the descriptors are not its to use. It serves {P} only. */
	it_sd_start_fds(s, "listen 127.0.0.1:{P}\nauth none\n", env, lfd);
	close(lfd);
	if (it_daemon_log_contains(&s->fx.d, "socket activation"))
		fail_msg("LISTEN_PID=1 but the daemon adopted fd 3");
	int fd = it_connect(AF_INET, inherited_port);
	if (fd >= 0) {
		/* The kernel completes the handshake on the still-open socket;
		 * nobody answers on it. */
		it_send_bytes(fd, greet, sizeof(greet));
		enum it_close c = it_wait_close(fd, 500);
		if (c != IT_CLOSE_TIMEOUT)
			fail_msg("the socket of LISTEN_PID=1 answered: %s", it_close_str(c));
		it_close(fd);
	}
}

/* ---- SIGHUP reload ----------------------------------------------------- */

static const char *const conf_alice =
	"listen 127.0.0.1:{P}\nauth password\nuser alice wonderland\nlog-level debug\n";
static const char *const conf_bob =
	"listen 127.0.0.1:{P}\nauth password\nuser bob builder\nlog-level debug\n"
	"timeout handshake 1\ntimeout idle 1\n";

static void
test_reload_new_users_for_new_sessions_established_session_untouched(void **state)
{
	struct it_sd *s = *state;

	it_sd_start(s, conf_alice, NULL);
	s->fx.user = "alice";
	s->fx.pass = "wonderland";
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 65536, 1);
	/* Data in flight while the signal lands and the file is re-read. */
	it_sd_write_conf(s, conf_bob);
	assert_int_equal(kill(s->fx.d.pid, SIGHUP), 0);
	for (uint64_t i = 0; i < 10; i++)
		it_expect_echo(fd, 32768, 100 + i);
	it_sd_expect_msg(s, "RELOADING=1", 5000);
	long ready = it_sd_expect_msg(s, "READY=1", 5000);
	assert_string_equal(s->msgs[ready], "READY=1");
	it_expect_echo(fd, 262144, 2);
	uint64_t last_io = it_now_ms();

	/* New sessions get the new timeouts, the established one keeps its
	 * own: a silent new client is dropped at "timeout handshake 1" (the
	 * old file said 10) while alice's session sits idle past the new
	 * "timeout idle 1" (the old file said 3600). */
	int silent = it_connect(AF_INET, s->fx.d.port);
	assert_true(silent >= 0);
	uint64_t t0 = it_now_ms();
	enum it_close how = it_wait_close(silent, 4000);
	uint64_t dropped = it_now_ms() - t0;
	it_close(silent);
	if (how != IT_CLOSE_EOF && how != IT_CLOSE_RST)
		fail_msg("silent client after the reload to timeout handshake 1: %s after "
			 "%llu ms",
			it_close_str(how), (unsigned long long)dropped);
	assert_in_range(dropped, 700, 3000);
	while (it_now_ms() - last_io < 1800)
		it_sleep_ms(50);
	it_expect_echo(fd, 4096, 9);

	/* New sessions: bob is in, alice is out. */
	it_sd_expect_auth_refused(s->fx.d.port, "alice", "wonderland");
	s->fx.user = "bob";
	s->fx.pass = "builder";
	int fd2 = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd2, 4096, 3);
	it_close(fd2);

	/* alice's session, authenticated under the old file, still relays. */
	it_expect_echo(fd, 65536, 4);
	it_close(fd);
}

static void
test_reload_with_broken_file_keeps_running_config_and_logs_file_line(void **state)
{
	struct it_sd *s = *state;
	char where[400];

	it_sd_start(s, conf_alice, NULL);
	s->fx.user = "alice";
	s->fx.pass = "wonderland";
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	/* Line 4 is an unknown directive: the whole file is rejected, bob
	 * included. */
	long ready = it_sd_reload(s,
		"listen 127.0.0.1:{P}\nauth password\n"
		"user bob builder\nfrobnicate yes\n");
	if (strncmp(s->msgs[ready], "READY=1\nSTATUS=reload failed:", 29) != 0)
		fail_msg("after a failed reload want READY=1\\nSTATUS=reload failed: ..., "
			 "got \"%s\"",
			s->msgs[ready]);
	snprintf(where, sizeof(where), "%s:4:", s->fx.d.conf);
	if (strstr(s->msgs[ready], where) == NULL)
		fail_msg("STATUS does not name %s: \"%s\"", where, s->msgs[ready]);
	if (!it_daemon_log_contains(&s->fx.d, where)) {
		it_daemon_log_tail(&s->fx.d, 10);
		fail_msg("log does not report the error as %s", where);
	}
	it_expect_echo(fd, 65536, 5);
	it_sd_expect_auth_refused(s->fx.d.port, "bob", "builder");
	int fd2 = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd2, 4096, 6);
	it_close(fd2);

	/* Fixed: the next SIGHUP takes it. */
	ready = it_sd_reload(s, conf_bob);
	assert_string_equal(s->msgs[ready], "READY=1");
	s->fx.user = "bob";
	s->fx.pass = "builder";
	fd2 = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_close(fd2);
	it_expect_echo(fd, 65536, 7);
	it_close(fd);
}

static void
test_reload_opens_added_listener_closes_removed_one(void **state)
{
	struct it_sd *s = *state;

	it_sd_start(s, "listen 127.0.0.1:{P}\nlisten 127.0.0.1:{Q}\nauth none\n", NULL);
	struct it_fixture q = it_sd_via(s, s->port2, NULL, NULL);
	struct it_fixture r = it_sd_via(s, s->port3, NULL, NULL);
	int via_q = it_open_tunnel(&q, AF_INET, &it_tg.echo4);
	it_expect_echo(via_q, 4096, 10);
	if (!it_sd_wait_refused(s->port3, 0))
		fail_msg("{R} accepts before the reload that adds it");

	long ready = it_sd_reload(s, "listen 127.0.0.1:{P}\nlisten 127.0.0.1:{R}\nauth none\n");
	assert_string_equal(s->msgs[ready], "READY=1");
	int via_r = it_open_tunnel(&r, AF_INET, &it_tg.echo4);
	it_expect_echo(via_r, 4096, 11);
	it_close(via_r);
	int fd = it_connect(AF_INET, s->port2);
	if (fd >= 0 || errno != ECONNREFUSED)
		fail_msg("127.0.0.1:%u is still accepting after the reload removed it (%s)",
			s->port2, fd >= 0 ? "connected" : strerror(errno));
	/* The session accepted on the closed listener is not the listener's
	 * to end. */
	it_expect_echo(via_q, 65536, 12);
	it_close(via_q);
}

/* Entries in /proc/PID/fd: the daemon's open descriptors. */
static unsigned
it_sd_count_fds(pid_t pid)
{
	char path[64];
	unsigned n = 0;
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (dir == NULL)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

static void
test_repeated_reloads_leak_no_descriptors(void **state)
{
	struct it_sd *s = *state;
	const char *conf = "listen 127.0.0.1:{P}\nlisten 127.0.0.1:{Q}\nauth none\n";

	it_sd_start(s, conf, NULL);
	/* The lowest of a few samples: the readiness probe's connection may
	 * still be open in the daemon at first. */
	unsigned before = it_sd_count_fds(s->fx.d.pid);
	for (int i = 0; i < 5; i++) {
		it_sleep_ms(20);
		unsigned n = it_sd_count_fds(s->fx.d.pid);
		if (n < before)
			before = n;
	}
	for (int i = 0; i < 20; i++) {
		long ready = it_sd_reload(s, conf);
		assert_string_equal(s->msgs[ready], "READY=1");
	}
	uint64_t t0 = it_now_ms();
	unsigned after;
	while ((after = it_sd_count_fds(s->fx.d.pid)) > before && it_now_ms() - t0 < 3000)
		it_sleep_ms(20);
	if (after > before)
		fail_msg("daemon had %u descriptors before 20 reloads, %u after", before, after);
}

/* ---- graceful stop ----------------------------------------------------- */

static void
test_sigterm_lets_in_flight_transfer_finish_refuses_new_exits_0(void **state)
{
	struct it_sd *s = *state;
	const size_t total = 5u << 20, chunk = 65536;
	uint8_t hdr[8], reply[16], *buf = malloc(chunk);
	uint64_t st = 77;
	size_t sent = 0;

	assert_non_null(buf);
	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\n", NULL);
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.sink4);
	it_put_be64(hdr, total);
	it_send_bytes(fd, hdr, sizeof(hdr));
	while (sent < (1u << 20)) {
		it_fill(buf, chunk, &st);
		it_send_bytes(fd, buf, chunk);
		sent += chunk;
	}
	assert_int_equal(kill(s->fx.d.pid, SIGTERM), 0);
	it_sd_expect_msg(s, "STOPPING=1", 3000);
	if (!it_sd_wait_refused(s->fx.d.port, 3000))
		fail_msg("new connections still accepted 3 s after SIGTERM");
	/* The rest at a slow-ish pace: the session lives on while stopping. */
	while (sent < total) {
		it_fill(buf, chunk, &st);
		it_send_bytes(fd, buf, chunk);
		sent += chunk;
		if (sent % (1u << 20) == 0) {
			it_sleep_ms(50);
			if (!it_daemon_running(&s->fx.d))
				fail_msg("daemon exited with %zu of %zu bytes sent", sent, total);
		}
	}
	if (it_recv_exact(fd, reply, sizeof(reply), 10000) != sizeof(reply))
		fail_msg("no count+hash from the sink after the transfer (%s)",
			errno ? strerror(errno) : "EOF");
	free(buf);
	assert_int_equal(it_get_be64(reply), total);
	if (it_get_be64(reply + 8) != it_stream_hash(77, total))
		fail_msg("the sink's hash of the 5 MB differs: data altered after SIGTERM");
	it_close(fd);
	/* The last session is gone: the daemon must not sit out the 10 s. */
	uint64_t t0 = it_now_ms();
	it_sd_expect_exit_0(s, 3000, "after the last session ended");
	print_message("[   INFO   ] exited %llu ms after the last session closed\n",
		(unsigned long long)(it_now_ms() - t0));
}

static void
test_shutdown_timeout_closes_sessions_that_do_not_finish(void **state)
{
	struct it_sd *s = *state;

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\nshutdown-timeout 1\n", NULL);
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 4096, 20);
	uint64_t t0 = it_now_ms();
	assert_int_equal(kill(s->fx.d.pid, SIGTERM), 0);
	/* Still relaying within the grace period. */
	it_sleep_ms(200);
	it_expect_echo(fd, 4096, 21);
	it_expect_close(fd, 3000);
	uint64_t closed = it_now_ms() - t0;
	it_close(fd);
	it_sd_expect_exit_0(s, 2000, "after shutdown-timeout 1");
	print_message("[   INFO   ] idle session closed %llu ms after SIGTERM\n",
		(unsigned long long)closed);
	assert_in_range(closed, 800, 3000);
}

static void
test_second_sigterm_closes_remaining_sessions_at_once(void **state)
{
	struct it_sd *s = *state;

	it_sd_start(s, "listen 127.0.0.1:{P}\nauth none\nshutdown-timeout 60\n", NULL);
	int fd = it_open_tunnel(&s->fx, AF_INET, &it_tg.echo4);
	assert_int_equal(kill(s->fx.d.pid, SIGTERM), 0);
	it_sd_expect_msg(s, "STOPPING=1", 3000);
	it_expect_echo(fd, 4096, 22);
	uint64_t t0 = it_now_ms();
	assert_int_equal(kill(s->fx.d.pid, SIGTERM), 0);
	it_expect_close(fd, 2000);
	it_close(fd);
	it_sd_expect_exit_0(s, 2000, "after a second SIGTERM");
	print_message("[   INFO   ] exited %llu ms after the second SIGTERM\n",
		(unsigned long long)(it_now_ms() - t0));
}

/* ---- -t and -T ----------------------------------------------------------- */

struct it_sd_run {
	int status;
	char out[16384];
	char err[4096];
};

static void
it_sd_slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f != NULL) {
		n = fread(buf, 1, cap - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* Runs the daemon binary with args (bounded: 5 s) and collects its exit
 * status, stdout and stderr. */
static void
it_sd_run(const struct it_sd *s, char *const args[], struct it_sd_run *res)
{
	char out[300], err[300];
	char *argv[8] = { (char *)it_sd_server_path() };
	size_t n = 1;

	for (; args[n - 1] != NULL && n < 7; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	snprintf(out, sizeof(out), "%s/out", s->fx.d.dir);
	snprintf(err, sizeof(err), "%s/err", s->fx.d.dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	uint64_t deadline = it_now_ms() + 5000;
	while (waitpid(pid, &res->status, WNOHANG) != pid) {
		if (it_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &res->status, 0);
			fail_msg("%s %s did not finish within 5 s", argv[0], argv[1]);
		}
		it_sleep_ms(5);
	}
	it_sd_slurp(out, res->out, sizeof(res->out));
	it_sd_slurp(err, res->err, sizeof(res->err));
	unlink(out);
	unlink(err);
}

/* A temp dir and config file for -t runs, without starting anything. */
static void
it_sd_conf_only(struct it_sd *s, const char *tmpl)
{
	struct it_daemon *d = &s->fx.d;

	if (it_is_microsocks()) {
		print_message("[   INFO   ] skipped: microsocks has no -t\n");
		skip();
	}
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/socks5d-it.XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(d->conf, sizeof(d->conf), "%s/socks5d.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/server.log", d->dir);
	d->port = 1081; /* never bound: -t only reads */
	s->port2 = 1082;
	s->port3 = 1083;
	it_sd_write_conf(s, tmpl);
}

static int
it_sd_exit_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
test_check_valid_file_exits_0(void **state)
{
	struct it_sd *s = *state;
	struct it_sd_run res;

	it_sd_conf_only(s,
		"listen 127.0.0.1:{P}\nauth password\nuser alice wonderland\n"
		"timeout idle 60\n");
	char *args[] = { "-t", "-f", s->fx.d.conf, NULL };
	it_sd_run(s, args, &res);
	if (it_sd_exit_code(res.status) != 0)
		fail_msg("-t on a valid file exited %d, want 0; stderr: %s",
			it_sd_exit_code(res.status), res.err);
}

static void
test_check_invalid_file_exits_1_with_file_line_on_stderr(void **state)
{
	struct it_sd *s = *state;
	struct it_sd_run res;
	char where[400];

	it_sd_conf_only(s, "listen 127.0.0.1:{P}\n# comment\nauth none\ntimeout idle soon\n");
	char *args[] = { "-t", "-f", s->fx.d.conf, NULL };
	it_sd_run(s, args, &res);
	if (it_sd_exit_code(res.status) != 1)
		fail_msg("-t on an invalid file exited %d, want 1", it_sd_exit_code(res.status));
	snprintf(where, sizeof(where), "%s:4: ", s->fx.d.conf);
	if (strstr(res.err, where) == NULL)
		fail_msg("stderr does not name \"%s\": %s", where, res.err);
}

static void
test_check_missing_file_exits_1(void **state)
{
	struct it_sd *s = *state;
	struct it_sd_run res;
	char missing[400];

	it_sd_conf_only(s, "auth none\n");
	snprintf(missing, sizeof(missing), "%s/nonexistent.conf", s->fx.d.dir);
	char *args[] = { "-t", "-f", missing, NULL };
	it_sd_run(s, args, &res);
	if (it_sd_exit_code(res.status) != 1)
		fail_msg("-t -f on a missing file exited %d, want 1", it_sd_exit_code(res.status));
	if (strstr(res.err, missing) == NULL)
		fail_msg("stderr does not name the missing file: %s", res.err);
}

static void
test_dump_prints_effective_config_with_defaults_without_secrets(void **state)
{
	struct it_sd *s = *state;
	struct it_sd_run res;
	char want[64];

	it_sd_conf_only(s,
		"listen 127.0.0.1:{P}\nlisten 127.0.0.1:{Q}\nauth password\n"
		"user alice wonderland\ntimeout idle 60\n");
	char *args[] = { "-T", "-f", s->fx.d.conf, NULL };
	it_sd_run(s, args, &res);
	if (it_sd_exit_code(res.status) != 0)
		fail_msg("-T exited %d, want 0; stderr: %s", it_sd_exit_code(res.status), res.err);
	const char *lines[] = {
		"\nauth password\n",
		"\ntimeout idle 60\n",
		/* defaults the file does not mention */
		"\ntimeout connect 10\n",
		"\ntimeout handshake 10\n",
		"\nshutdown-timeout 10\n",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (strstr(res.out, lines[i]) == NULL)
			fail_msg("-T output lacks \"%.*s\":\n%s", (int)strlen(lines[i]) - 2,
				lines[i] + 1, res.out);
	snprintf(want, sizeof(want), "listen 127.0.0.1:%u\n", s->port2);
	if (strstr(res.out, want) == NULL)
		fail_msg("-T output lacks \"%s\":\n%s", want, res.out);
	if (strstr(res.out, "wonderland") != NULL || strstr(res.err, "wonderland") != NULL)
		fail_msg("-T printed alice's secret");

	/* And -T on a broken file: 1, no half dump. */
	it_sd_write_conf(s, "listen 127.0.0.1:{P}\nlisten nowhere\n");
	it_sd_run(s, args, &res);
	if (it_sd_exit_code(res.status) != 1)
		fail_msg("-T on an invalid file exited %d, want 1", it_sd_exit_code(res.status));
	if (strstr(res.out, "listen") != NULL)
		fail_msg("-T printed a configuration for an invalid file:\n%s", res.out);
}

int
it_run_systemd_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_SD_TEST(test_ready_on_path_socket_after_listen_then_status),
		IT_SD_TEST(test_abstract_socket_gets_reloading_with_monotonic_usec_then_ready),
		IT_SD_TEST(test_sigterm_sends_stopping_and_exits_0),
		IT_SD_TEST(test_watchdog_sent_at_half_of_watchdog_usec),
		IT_SD_TEST(test_watchdog_for_another_pid_is_not_sent),
		IT_SD_TEST(test_socket_activation_serves_inherited_socket_without_default_listener),
		IT_SD_TEST(test_socket_activation_with_listen_lines_reuses_same_address),
		IT_SD_TEST(test_reload_refuses_to_open_an_inherited_listener),
		IT_SD_TEST(test_listen_fds_for_another_pid_are_ignored),
		IT_SD_TEST(test_reload_new_users_for_new_sessions_established_session_untouched),
		IT_SD_TEST(test_reload_with_broken_file_keeps_running_config_and_logs_file_line),
		IT_SD_TEST(test_reload_opens_added_listener_closes_removed_one),
		IT_SD_TEST(test_repeated_reloads_leak_no_descriptors),
		IT_SD_TEST(test_sigterm_lets_in_flight_transfer_finish_refuses_new_exits_0),
		IT_SD_TEST(test_shutdown_timeout_closes_sessions_that_do_not_finish),
		IT_SD_TEST(test_second_sigterm_closes_remaining_sessions_at_once),
		IT_SD_TEST(test_check_valid_file_exits_0),
		IT_SD_TEST(test_check_invalid_file_exits_1_with_file_line_on_stderr),
		IT_SD_TEST(test_check_missing_file_exits_1),
		IT_SD_TEST(test_dump_prints_effective_config_with_defaults_without_secrets),
	};

	return cmocka_run_group_tests_name("systemd: notify, socket activation, reload, stop, -t",
		tests, it_sd_group_setup, it_sd_group_teardown);
}
