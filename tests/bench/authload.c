/*
 * authload: the `auth` mode of `make bench` (issue 17). Measures what a
 * flood of wrong passwords costs the sessions a proxy relays, and whether
 * the time to a refusal tells existing users from unknown names:
 *
 *  1. the round-trip times of one relayed session (64-byte echo, one
 *     message in flight), in --seconds quiet seconds and --seconds flood
 *     seconds that alternate (so the machine's drift spreads over both):
 *     in a flood second, --rate wrong logins a second (unknown names, each
 *     costing a hash) arrive from --sources addresses and are cut at its
 *     end, and one valid login is made every 100 ms from another address
 *     (all must pass);
 *  2. timing: --tries refusals, half of them a wrong password for the
 *     existing user and half an unknown name, a few at a time from
 *     rotating addresses (under any lockout): the median time from the
 *     credentials to the answer, per kind.
 *
 * The round trips are timed by a child process of their own with blocking
 * I/O, so the flood's bookkeeping in the parent never delays them. Output
 * is `metric=NAME value=V unit=U` lines, as loadgen's. `authload hash PASS`
 * prints a yescrypt hash of PASS for the proxy's configuration.
 */
#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ECHO_LEN 64
#define MAX_RTT 2000000 /* samples kept per phase */
#define MAX_LOGINS 65536
#define VALID_EVERY_US 100000

enum login_kind {
	LOGIN_FLOOD,
	LOGIN_VALID,
	LOGIN_KNOWN,
	LOGIN_UNKNOWN
};

struct login {
	int fd;
	enum login_kind kind;
	uint64_t sent_us; /* credentials sent */
	uint8_t got[4];   /* 05 02, then 01 STATUS */
	size_t have;
	bool sent;
};

static struct sockaddr_in proxy, target;
static const char *user = "bench", *pass = "benchpass";
static unsigned seconds = 10, rate = 200, sources = 50, tries = 200;

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "authload: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A decimal option value; anything else is a usage error. */
static unsigned
uint_arg(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (end == s || *end != '\0' || v > 1000000u)
		die("bad number '%s'", s);
	return (unsigned)v;
}

static void
parse_addr(const char *s, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		die("bad address %s", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)uint_arg(colon + 1));
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		die("bad address %s", s);
}

/* Greeting (method 02) and the RFC 1929 request, in one buffer. */
static size_t
credentials(uint8_t *out, const char *u, const char *p)
{
	size_t ul = strlen(u), pl = strlen(p), n = 0;

	out[n++] = 0x05;
	out[n++] = 0x01;
	out[n++] = 0x02;
	out[n++] = 0x01;
	out[n++] = (uint8_t)ul;
	for (size_t i = 0; i < ul; i++) /* wire bytes, no terminator */
		out[n++] = (uint8_t)u[i];
	out[n++] = (uint8_t)pl;
	for (size_t i = 0; i < pl; i++)
		out[n++] = (uint8_t)p[i];
	return n;
}

/* A nonblocking connect to the proxy from 127.0.0.src. */
static int
connect_from(unsigned src, bool block)
{
	struct sockaddr_in from = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (block ? 0 : SOCK_NONBLOCK), 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	from.sin_addr.s_addr = htonl(0x7f000000u | src);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0)
		die("bind 127.0.0.%u: %s", src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&proxy, sizeof(proxy)) < 0 && errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	return fd;
}

static void
read_exact(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			die("session: %s", r == 0 ? "closed" : strerror(errno));
		p += r;
		n -= (size_t)r;
	}
}

/* --- the relayed session, timed by a child ---------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t
pct(uint64_t *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(size_t)(q * (double)(n - 1))];
}

/* Opens the session (valid login, CONNECT to the target). */
static int
open_session(void)
{
	uint8_t msg[600], reply[10];
	int fd = connect_from(250, true), one = 1;
	size_t n = credentials(msg, user, pass);

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (write(fd, msg, n) != (ssize_t)n)
		die("session: write");
	read_exact(fd, msg, 4);
	if (msg[3] != 0x00)
		die("session: login refused");
	msg[0] = 0x05;
	msg[1] = 0x01;
	msg[2] = 0x00;
	msg[3] = 0x01;
	memcpy(msg + 4, &target.sin_addr, 4);
	memcpy(msg + 8, &target.sin_port, 2);
	if (write(fd, msg, 10) != 10)
		die("session: write");
	read_exact(fd, reply, sizeof(reply));
	if (reply[1] != 0x00)
		die("session: CONNECT refused (REP %02x)", reply[1]);
	return fd;
}

/* The schedule both processes keep: from t0, one-second periods, quiet
 * and flood in turn. */
#define PERIOD_US 1000000u
#define GUARD_US 100000u /* samples this soon after a change are not kept */
static uint64_t t0;

static bool
in_flood(uint64_t t)
{
	return t >= t0 && ((t - t0) / PERIOD_US) % 2 == 1;
}

static bool
near_change(uint64_t t)
{
	return t < t0 || (t - t0) % PERIOD_US < GUARD_US;
}

/* The child: round trips until the schedule ends, each kept by the kind of
 * period it started in; then the results. */
static void __attribute__((noreturn)) rtt_child(int up)
{
	static uint64_t v[2][MAX_RTT];
	uint8_t buf[ECHO_LEN] = { 1 };
	uint64_t end = t0 + (uint64_t)2 * seconds * PERIOD_US, q[2][2];
	size_t n[2] = { 0, 0 };
	int fd = open_session();

	if (write(up, "R", 1) != 1)
		_exit(1);
	while (now_us() < end) {
		uint64_t t = now_us();
		int k = in_flood(t);
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			die("session: write");
		read_exact(fd, buf, sizeof(buf));
		if (!near_change(t) && n[k] < MAX_RTT)
			v[k][n[k]++] = now_us() - t;
	}
	for (int k = 0; k < 2; k++) {
		q[k][0] = pct(v[k], n[k], 0.5);
		q[k][1] = pct(v[k], n[k], 0.99);
	}
	printf("metric=auth_rtt_p50_quiet value=%" PRIu64 " unit=us\n", q[0][0]);
	printf("metric=auth_rtt_p99_quiet value=%" PRIu64 " unit=us\n", q[0][1]);
	printf("metric=auth_rtt_p50_flood value=%" PRIu64 " unit=us\n", q[1][0]);
	printf("metric=auth_rtt_p99_flood value=%" PRIu64 " unit=us\n", q[1][1]);
	printf("metric=auth_rtt_p99_ratio value=%.2f unit=x\n",
		q[0][1] ? (double)q[1][1] / (double)q[0][1] : 0.0);
	fflush(stdout);
	_exit(0);
}

/* --- logins ------------------------------------------------------------------- */

static int ep;
static unsigned nopen;
static struct login *flood_open[MAX_LOGINS]; /* cut at the end of a flood period */
static size_t nflood_open;
static uint64_t valid_ok, valid_all, flood_sent, flood_answered;
static uint64_t times[2][MAX_LOGINS];
static size_t ntimes[2];

static void
login_start(enum login_kind kind, unsigned src, unsigned seq)
{
	struct login *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLOUT };

	if (!l)
		die("out of memory");
	l->kind = kind;
	l->fd = connect_from(src, false);
	if (kind == LOGIN_FLOOD && nflood_open < MAX_LOGINS)
		flood_open[nflood_open++] = l;
	ev.data.ptr = l;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	nopen++;
	(void)seq;
}

static void
login_end(struct login *l, int status)
{
	uint64_t took = now_us() - l->sent_us;

	switch (l->kind) {
	case LOGIN_FLOOD:
		flood_answered += status >= 0;
		for (size_t i = 0; i < nflood_open; i++)
			if (flood_open[i] == l)
				flood_open[i] = NULL;
		break;
	case LOGIN_VALID:
		valid_ok += status == 0;
		break;
	case LOGIN_KNOWN:
	case LOGIN_UNKNOWN:
		if (status == 1 && ntimes[l->kind - LOGIN_KNOWN] < MAX_LOGINS)
			times[l->kind - LOGIN_KNOWN][ntimes[l->kind - LOGIN_KNOWN]++] = took;
		break;
	}
	close(l->fd);
	free(l);
	nopen--;
}

static void
login_io(struct login *l, uint32_t events)
{
	static unsigned seq;
	uint8_t msg[600];
	char name[64];

	if (!l->sent) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
		size_t n;
		if (events & (EPOLLERR | EPOLLHUP)) {
			login_end(l, -1);
			return;
		}
		snprintf(name, sizeof(name), "nobody%u", ++seq);
		n = l->kind == LOGIN_UNKNOWN || l->kind == LOGIN_FLOOD
			? credentials(msg, name, "guess")
			: l->kind == LOGIN_KNOWN ? credentials(msg, user, "guess")
						 : credentials(msg, user, pass);
		l->sent_us = now_us();
		if (write(l->fd, msg, n) != (ssize_t)n) {
			login_end(l, -1);
			return;
		}
		l->sent = true;
		(void)epoll_ctl(ep, EPOLL_CTL_MOD, l->fd, &ev);
		return;
	}
	for (;;) {
		ssize_t r = read(l->fd, l->got + l->have, sizeof(l->got) - l->have);
		if (r > 0) {
			l->have += (size_t)r;
			if (l->have == sizeof(l->got)) {
				login_end(l, l->got[3]);
				return;
			}
			continue;
		}
		if (r < 0 && errno == EAGAIN)
			return;
		login_end(l, -1);
		return;
	}
}

static void
pump(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(ep, evs, 256, timeout_ms);

	for (int i = 0; i < n; i++)
		login_io(evs[i].data.ptr, evs[i].events);
}

/* Closes every flood login still waiting: a quiet period is quiet. */
static void
cut_flood(void)
{
	for (size_t i = 0; i < nflood_open; i++)
		if (flood_open[i])
			login_end(flood_open[i], -1);
	nflood_open = 0;
}

/* The schedule: flood periods with their logins, quiet ones without. */
static void
flood(void)
{
	uint64_t end = t0 + (uint64_t)2 * seconds * PERIOD_US, next = 0, next_valid = 0;
	uint64_t gap = 1000000u / rate;
	bool was_flood = false;

	while (now_us() < end) {
		uint64_t t = now_us();
		bool f = in_flood(t);
		if (was_flood && !f)
			cut_flood();
		if (f && !was_flood)
			next = next_valid = t;
		was_flood = f;
		while (f && next <= t) {
			login_start(LOGIN_FLOOD, 2 + (unsigned)(flood_sent % sources), 0);
			flood_sent++;
			next += gap;
		}
		if (f && next_valid <= t) {
			login_start(LOGIN_VALID, 240, 0);
			valid_all++;
			next_valid += VALID_EVERY_US;
		}
		pump(1);
	}
	cut_flood();
	/* Valid logins still waiting get their answer. */
	for (uint64_t wait_end = now_us() + 15000000u; now_us() < wait_end && nopen > 0;)
		pump(10);
}

/* Refusals of both kinds, four at a time (two each) from rotating
 * addresses; the time each took. */
static void
timing(void)
{
	unsigned src = 100;

	for (unsigned i = 0; i < tries; i += 4) {
		for (unsigned k = 0; k < 4; k++)
			login_start(k % 2 ? LOGIN_UNKNOWN : LOGIN_KNOWN, src++ % 100 + 100, 0);
		for (uint64_t end = now_us() + 15000000u; nopen > 0 && now_us() < end;)
			pump(10);
	}
}

static void
usage(void)
{
	die("usage: authload --proxy IP:PORT --target IP:PORT [--user U --pass P] "
	    "[--seconds S] [--rate R] [--sources N] [--tries N]\n       authload hash PASS");
}

int
main(int argc, char **argv)
{
	int pipefd[2], status;
	char go;
	pid_t child;

	if (argc == 3 && strcmp(argv[1], "hash") == 0) {
		char setting[CRYPT_GENSALT_OUTPUT_SIZE];
		if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)))
			die("crypt_gensalt");
		printf("%s\n", crypt(argv[2], setting));
		return 0;
	}
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--proxy") == 0)
			parse_addr(argv[i + 1], &proxy);
		else if (strcmp(argv[i], "--target") == 0)
			parse_addr(argv[i + 1], &target);
		else if (strcmp(argv[i], "--user") == 0)
			user = argv[i + 1];
		else if (strcmp(argv[i], "--pass") == 0)
			pass = argv[i + 1];
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = uint_arg(argv[i + 1]);
		else if (strcmp(argv[i], "--rate") == 0)
			rate = uint_arg(argv[i + 1]);
		else if (strcmp(argv[i], "--sources") == 0)
			sources = uint_arg(argv[i + 1]);
		else if (strcmp(argv[i], "--tries") == 0)
			tries = uint_arg(argv[i + 1]);
		else
			usage();
	}
	if (!proxy.sin_port || !target.sin_port || !rate || !sources || sources > 200)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (pipe(pipefd) < 0 || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("pipe/epoll: %s", strerror(errno));
	fflush(stdout);
	t0 = now_us() + 500000u; /* the session is open by then */
	if ((child = fork()) == 0) {
		close(pipefd[0]);
		rtt_child(pipefd[1]);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &go, 1) != 1)
		die("the session child failed");
	flood();
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the session child failed");
	timing();
	printf("metric=auth_flood_offered value=%.0f unit=logins/s\n",
		(double)flood_sent / seconds);
	printf("metric=auth_flood_answered value=%.0f unit=logins/s\n",
		(double)flood_answered / seconds);
	printf("metric=auth_valid_ok value=%.1f unit=%%\n",
		valid_all ? 100.0 * (double)valid_ok / (double)valid_all : 0.0);
	{
		uint64_t known = pct(times[0], ntimes[0], 0.5),
			 unknown = pct(times[1], ntimes[1], 0.5);
		printf("metric=auth_refusal_known value=%.1f unit=ms\n", (double)known / 1000.0);
		printf("metric=auth_refusal_unknown value=%.1f unit=ms\n",
			(double)unknown / 1000.0);
		printf("metric=auth_refusal_diff value=%.2f unit=ms\n",
			(double)(known > unknown ? known - unknown : unknown - known) / 1000.0);
	}
	return 0;
}
