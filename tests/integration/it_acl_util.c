/*
 * it_acl_util: the access-control and scaling tests' clients (see
 * it_acl_util.h): source-address clients, PROXY protocol v1/v2 headers,
 * raw requests, exact refusals, log polling, spare ports and a bounded run
 * of a program with its output captured.
 */
#include "it_acl_util.h"

#include <arpa/inet.h>
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
#include <sys/wait.h>
#include <unistd.h>

#define IT_ACL_MAX_PORTS 64

/* ---- ports ------------------------------------------------------------- */

static bool
bindable(int type, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

bool
it_acl_port_free(uint16_t port)
{
	return bindable(SOCK_STREAM, port) && bindable(SOCK_DGRAM, port);
}

uint16_t
it_acl_free_port(void)
{
	static uint16_t given[IT_ACL_MAX_PORTS];
	static size_t ngiven;
	static uint64_t st;

	if (st == 0)
		st = ((uint64_t)getpid() << 20) ^ it_now_ms() ^ 0xac15ca1eULL;
	for (int i = 0; i < 500; i++) {
		uint8_t r[2];
		bool dup = false;

		it_fill(r, sizeof(r), &st);
		/* The harness takes 20000-31999 too; ours come from 32000 down
		 * to 24000 so that the two rarely meet (a clash only costs the
		 * harness one start attempt). */
		uint16_t port = (uint16_t)(24000 + ((r[0] << 8 | r[1]) % 8000));
		for (size_t k = 0; k < ngiven; k++)
			dup |= given[k] == port;
		if (dup || !it_acl_port_free(port))
			continue;
		if (ngiven < IT_ACL_MAX_PORTS)
			given[ngiven++] = port;
		return port;
	}
	return 0;
}

/* ---- PROXY protocol ---------------------------------------------------- */

size_t
it_acl_proxy_v1(char *out, const char *src, uint16_t sport, const char *dst, uint16_t dport)
{
	int n = snprintf(out, 108, "PROXY %s %s %s %u %u\r\n", strchr(src, ':') ? "TCP6" : "TCP4",
		src, dst, sport, dport);

	return n > 0 ? (size_t)n : 0;
}

size_t
it_acl_proxy_v2(uint8_t *out, const char *src, uint16_t sport, const char *dst, uint16_t dport)
{
	static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
		0x54, 0x0A };
	bool v6 = strchr(src, ':') != NULL;
	size_t alen = v6 ? 16 : 4, n = 0;

	memcpy(out, sig, sizeof(sig));
	n = sizeof(sig);
	out[n++] = 0x21;             /* version 2, PROXY */
	out[n++] = v6 ? 0x21 : 0x11; /* TCP over IPv6 / IPv4 */
	out[n++] = 0;
	out[n++] = (uint8_t)(2 * alen + 4);
	inet_pton(v6 ? AF_INET6 : AF_INET, src, out + n);
	n += alen;
	inet_pton(v6 ? AF_INET6 : AF_INET, dst, out + n);
	n += alen;
	out[n++] = (uint8_t)(sport >> 8);
	out[n++] = (uint8_t)sport;
	out[n++] = (uint8_t)(dport >> 8);
	out[n++] = (uint8_t)dport;
	return n;
}

/* ---- clients ----------------------------------------------------------- */

int
it_acl_dial(const char *src, uint16_t port, const void *hdr, size_t hdr_len, char *err,
	size_t errlen)
{
	int fd = it_connect_addr("127.0.0.1", port, src);

	if (fd < 0) {
		snprintf(err, errlen, "connect from %s to 127.0.0.1:%u: %s", src ? src : "-", port,
			strerror(errno));
		return -1;
	}
	if (hdr_len > 0 && it_send_all(fd, hdr, hdr_len) < 0) {
		snprintf(err, errlen, "send PROXY header: %s", strerror(errno));
		it_close(fd);
		return -1;
	}
	return fd;
}

/* Reads exactly n bytes and compares them with want. 0, or -1 with err. */
static int
it_acl_expect_raw(int fd, const uint8_t *want, size_t n, const char *what, char *err, size_t errlen)
{
	uint8_t got[16];
	size_t r = it_recv_exact(fd, got, n, IT_IO_TIMEOUT_MS);

	if (r != n) {
		snprintf(err, errlen, "%s: got %zu of %zu bytes, then %s", what, r, n,
			errno == 0 ? "EOF" : strerror(errno));
		return -1;
	}
	if (memcmp(got, want, n) != 0) {
		snprintf(err, errlen, "%s: got %02x %02x, want %02x %02x", what, got[0],
			n > 1 ? got[1] : 0, want[0], n > 1 ? want[1] : 0);
		return -1;
	}
	return 0;
}

int
it_acl_auth(int fd, const char *user, const char *pass, char *err, size_t errlen)
{
	uint8_t msg[600];
	size_t n = 0;

	if (user == NULL) {
		const uint8_t greet[] = { 0x05, 0x01, 0x00 }, chosen[] = { 0x05, 0x00 };
		if (it_send_all(fd, greet, sizeof(greet)) < 0) {
			snprintf(err, errlen, "send greeting: %s", strerror(errno));
			return -1;
		}
		return it_acl_expect_raw(fd, chosen, 2, "method reply", err, errlen);
	}
	const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	size_t ul = strlen(user), pl = strlen(pass);

	msg[n++] = 0x01;
	msg[n++] = (uint8_t)ul;
	memcpy(msg + n, user, ul);
	n += ul;
	msg[n++] = (uint8_t)pl;
	memcpy(msg + n, pass, pl);
	n += pl;
	if (it_send_all(fd, greet, sizeof(greet)) < 0) {
		snprintf(err, errlen, "send greeting: %s", strerror(errno));
		return -1;
	}
	if (it_acl_expect_raw(fd, chosen, 2, "method reply", err, errlen) < 0)
		return -1;
	if (it_send_all(fd, msg, n) < 0) {
		snprintf(err, errlen, "send credentials: %s", strerror(errno));
		return -1;
	}
	return it_acl_expect_raw(fd, ok, 2, "auth status", err, errlen);
}

int
it_acl_request(int fd, uint8_t cmd, const uint8_t *addr, size_t addr_len, struct it_reply *r,
	char *err, size_t errlen)
{
	uint8_t msg[3 + 1 + 1 + 255 + 2];

	msg[0] = 0x05;
	msg[1] = cmd;
	msg[2] = 0x00;
	memcpy(msg + 3, addr, addr_len);
	if (it_send_all(fd, msg, 3 + addr_len) < 0) {
		snprintf(err, errlen, "send request: %s", strerror(errno));
		return -1;
	}
	return it_read_reply(fd, r, IT_IO_TIMEOUT_MS, err, errlen);
}

size_t
it_acl_addr4(uint8_t *out, const char *ip, uint16_t port)
{
	out[0] = 0x01;
	inet_pton(AF_INET, ip, out + 1);
	out[5] = (uint8_t)(port >> 8);
	out[6] = (uint8_t)port;
	return 7;
}

size_t
it_acl_addr_name(uint8_t *out, const char *name, uint16_t port)
{
	size_t n = strlen(name);

	out[0] = 0x03;
	out[1] = (uint8_t)n;
	memcpy(out + 2, name, n);
	out[2 + n] = (uint8_t)(port >> 8);
	out[3 + n] = (uint8_t)port;
	return 4 + n;
}

int
it_acl_session(const struct it_acl_client *c, const struct it_target *t, char *err, size_t errlen)
{
	uint8_t addr[32];
	struct it_reply r;
	int fd = it_acl_dial(c->src, c->port, c->hdr, c->hdr ? c->hdr_len : 0, err, errlen);

	if (fd < 0)
		return -1;
	if (it_acl_auth(fd, c->user, c->pass, err, errlen) < 0 ||
		it_acl_request(fd, 0x01, addr, it_target_addr(t, addr), &r, err, errlen) < 0)
		goto fail;
	if (r.rep != 0x00) {
		snprintf(err, errlen, "CONNECT reply REP %02x, want 00", r.rep);
		goto fail;
	}
	return fd;
fail:
	it_close(fd);
	return -1;
}

int
it_acl_session_at(const struct it_acl_client *c, const struct it_target *t, const char *file,
	int line)
{
	char err[256];
	int fd = it_acl_session(c, t, err, sizeof(err));

	if (fd < 0) {
		print_error("ERROR: session from %s: %s\n", c->src ? c->src : "127.0.0.1", err);
		_fail(file, line);
	}
	return fd;
}

int
it_acl_session_retry(const struct it_acl_client *c, const struct it_target *t, int timeout_ms,
	char *err, size_t errlen)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		int fd = it_acl_session(c, t, err, errlen);
		if (fd >= 0 || it_now_ms() >= deadline)
			return fd;
		it_sleep_ms(50);
	}
}

void
it_acl_expect_refusal_at(int fd, uint8_t rep, const char *file, int line)
{
	const uint8_t want[10] = { 0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	struct it_reply r;
	char err[256];

	if (it_read_reply(fd, &r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0) {
		print_error("ERROR: want reply REP %02x: %s\n", rep, err);
		_fail(file, line);
	}
	if (r.len != sizeof(want) || memcmp(r.raw, want, sizeof(want)) != 0) {
		char got[3 * sizeof(r.raw) + 1] = "";
		for (size_t i = 0; i < r.len && i < 32; i++)
			snprintf(got + 3 * i, 4, "%02x ", r.raw[i]);
		print_error("ERROR: reply: got %s; want 05 %02x 00 01 00 00 00 00 00 00\n", got,
			rep);
		_fail(file, line);
	}
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST) {
		print_error("ERROR: after REP %02x want a close within 2 s, got %s\n", rep,
			it_close_str(c));
		_fail(file, line);
	}
}

void
it_acl_expect_shut_at(int fd, int timeout_ms, const char *what, const char *file, int line)
{
	enum it_close c = it_wait_close(fd, timeout_ms);

	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST) {
		print_error("ERROR: %s: want closed within %d ms with no byte sent, got %s\n", what,
			timeout_ms, it_close_str(c));
		_fail(file, line);
	}
}

/* ---- log --------------------------------------------------------------- */

int
it_acl_log_count(const struct it_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[4096];
	int n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

bool
it_acl_wait_log(const struct it_daemon *d, const char *needle, int n, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		if (it_acl_log_count(d, needle) >= n)
			return true;
		if (it_now_ms() >= deadline)
			return false;
		it_sleep_ms(20);
	}
}

void
it_acl_expect_log_at(const struct it_daemon *d, const char *needle, int timeout_ms,
	const char *file, int line)
{
	if (it_acl_wait_log(d, needle, 1, timeout_ms))
		return;
	print_error("ERROR: no log line holds \"%s\" within %d ms\n", needle, timeout_ms);
	it_daemon_log_tail(d, 15);
	_fail(file, line);
}

int
it_acl_conf_line(const struct it_daemon *d, int index)
{
	/* After "# written by ..."; the harness's listen lines come last. */
	(void)d;
	return 1 + index;
}

/* ---- programs ---------------------------------------------------------- */

int
it_acl_run_capture(char *const argv[], int timeout_ms, char *out, size_t cap)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	size_t len = 0;
	int pfd[2], status;
	bool eof = false;
	pid_t pid;

	if (cap > 0)
		out[0] = '\0';
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
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 ||
			dup2(pfd[1], 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	while (!eof && it_now_ms() < deadline) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		char buf[4096];
		int pr = poll(&p, 1, (int)(deadline - it_now_ms()));

		if (pr <= 0)
			continue;
		ssize_t r = read(pfd[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			eof = true;
			break;
		}
		if (cap > 1 && len < cap - 1) {
			size_t k = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
			memcpy(out + len, buf, k);
			len += k;
			out[len] = '\0';
		}
	}
	close(pfd[0]);
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		if (!eof || it_now_ms() >= deadline) {
			fprintf(stderr, "[   INFO   ] %s still running after %d ms: killed\n",
				argv[0], timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		it_sleep_ms(10);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}
