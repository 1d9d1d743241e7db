/*
 * client: a raw SOCKS5 client for the tests. Every operation is bounded by
 * poll() against a deadline (plus SO_RCVTIMEO/SO_SNDTIMEO as a backstop), so
 * a daemon that never answers fails a test instead of hanging the suite.
 * Low-level calls report errors; the it_expect_* wrappers assert.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IT_CONNECT_TIMEOUT_MS 2000
#define IT_MAX_OPEN 1024

static int it_open_fds[IT_MAX_OPEN]; /* 0: free slot (fd 0 is never a socket here) */

static void
it_register(int fd)
{
	for (size_t i = 0; i < IT_MAX_OPEN; i++) {
		if (it_open_fds[i] == 0) {
			it_open_fds[i] = fd;
			return;
		}
	}
	/* Full: the fd is simply not cleaned up after a failure. */
}

void
it_close(int fd)
{
	if (fd < 0)
		return;
	for (size_t i = 0; i < IT_MAX_OPEN; i++) {
		if (it_open_fds[i] == fd) {
			it_open_fds[i] = 0;
			break;
		}
	}
	close(fd);
}

void
it_close_leftovers(void)
{
	for (size_t i = 0; i < IT_MAX_OPEN; i++) {
		if (it_open_fds[i] != 0) {
			close(it_open_fds[i]);
			it_open_fds[i] = 0;
		}
	}
}

static void
it_loopback(int family, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = in6addr_loopback;
		*len = sizeof(*sin6);
	}
}

int
it_connect(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	struct timeval tv = { .tv_sec = 10 };
	struct pollfd pfd;
	socklen_t len, elen;
	int one = 1, err = 0;
	int fd, fl;

	it_loopback(family, port, &ss, &len);
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, IT_CONNECT_TIMEOUT_MS) != 1) {
			errno = ETIMEDOUT;
			goto fail;
		}
		elen = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			goto fail;
		if (err != 0) {
			errno = err;
			goto fail;
		}
	}
	/* Blocking from here on: poll() bounds reads, the socket timeouts bound
	 * the rest. */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	it_register(fd);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
it_send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1; /* EAGAIN here is SO_SNDTIMEO expiring */
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
it_remaining(uint64_t deadline)
{
	uint64_t now = it_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

size_t
it_recv_exact(int fd, void *p, size_t n, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	uint8_t *b = p;
	size_t got = 0;

	while (got < n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, it_remaining(deadline));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return got;
		if (pr == 0) {
			errno = ETIMEDOUT;
			return got;
		}
		ssize_t r = recv(fd, b + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return got;
		if (r == 0) {
			errno = 0;
			return got;
		}
		got += (size_t)r;
	}
	return got;
}

enum it_close
it_wait_close(int fd, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	uint8_t c;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP };
		int pr = poll(&pfd, 1, it_remaining(deadline));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			return IT_CLOSE_TIMEOUT;
		ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
		if (r == 0)
			return IT_CLOSE_EOF;
		if (r > 0)
			return IT_CLOSE_DATA;
		if (errno == ECONNRESET || errno == EPIPE)
			return IT_CLOSE_RST;
		if (errno != EINTR && errno != EAGAIN)
			return IT_CLOSE_RST; /* any other error: not open either */
		if (it_remaining(deadline) == 0)
			return IT_CLOSE_TIMEOUT;
	}
}

const char *
it_close_str(enum it_close c)
{
	switch (c) {
	case IT_CLOSE_EOF:
		return "EOF";
	case IT_CLOSE_RST:
		return "reset";
	case IT_CLOSE_TIMEOUT:
		return "still open (timeout)";
	case IT_CLOSE_DATA:
		return "unexpected data";
	}
	return "?";
}

static void
it_hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && o + 4 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%02x", i ? " " : "", p[i]);
}

int
it_read_reply(int fd, struct it_reply *r, int timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	size_t need, got;

	memset(r, 0, sizeof(*r));
	/* VER REP RSV ATYP, then an address whose length ATYP gives. */
	got = it_recv_exact(fd, r->raw, 4, it_remaining(deadline));
	r->len = got;
	if (got < 4) {
		snprintf(err, errlen, "reply: got %zu of 4 header bytes (%s)", got,
			errno ? strerror(errno) : "EOF");
		return -1;
	}
	r->rep = r->raw[1];
	r->atyp = r->raw[3];
	switch (r->atyp) {
	case 0x01:
		r->addr_len = 4;
		need = 4 + 2;
		break;
	case 0x04:
		r->addr_len = 16;
		need = 16 + 2;
		break;
	case 0x03:
		got = it_recv_exact(fd, r->raw + 4, 1, it_remaining(deadline));
		r->len += got;
		if (got < 1) {
			snprintf(err, errlen, "reply: no domain length byte");
			return -1;
		}
		r->addr_len = r->raw[4];
		need = r->addr_len + 2;
		break;
	default:
		snprintf(err, errlen, "reply: ATYP %02x is not 01, 03 or 04", r->atyp);
		return -1;
	}
	got = it_recv_exact(fd, r->raw + r->len, need, it_remaining(deadline));
	r->len += got;
	if (got < need) {
		snprintf(err, errlen, "reply: address cut short (%zu of %zu bytes)", got, need);
		return -1;
	}
	r->addr = r->raw + r->len - 2 - r->addr_len;
	r->port = (uint16_t)(r->raw[r->len - 2] << 8 | r->raw[r->len - 1]);
	if (r->raw[0] != 0x05 || r->raw[2] != 0x00) {
		char hex[80];
		it_hex(r->raw, r->len, hex, sizeof(hex));
		snprintf(err, errlen, "reply: VER/RSV not 05/00: %s", hex);
		return -1;
	}
	return 0;
}

size_t
it_target_addr(const struct it_target *t, uint8_t *out)
{
	size_t n = 0;

	if (t->family == AF_INET) {
		out[n++] = 0x01;
		out[n++] = 127;
		out[n++] = 0;
		out[n++] = 0;
		out[n++] = 1;
	} else {
		out[n++] = 0x04;
		memset(out + n, 0, 15);
		out[n + 15] = 1; /* ::1 */
		n += 16;
	}
	out[n++] = (uint8_t)(t->port >> 8);
	out[n++] = (uint8_t)t->port;
	return n;
}

/* 0 when exactly want arrives, else -1 with what came instead. */
static int
it_expect_raw(int fd, const uint8_t *want, size_t n, const char *what, char *err, size_t errlen)
{
	uint8_t got[64];
	size_t k = it_recv_exact(fd, got, n < sizeof(got) ? n : 0, IT_IO_TIMEOUT_MS);
	char hg[200], hw[200];

	if (n > sizeof(got)) {
		snprintf(err, errlen, "%s: %zu bytes is more than the harness expects", what, n);
		return -1;
	}
	if (k == n && memcmp(got, want, n) == 0)
		return 0;
	it_hex(got, k, hg, sizeof(hg));
	it_hex(want, n, hw, sizeof(hw));
	snprintf(err, errlen, "%s: want [%s], got [%s]%s", what, hw, hg,
		k < n ? (errno ? " then error/timeout" : " then EOF") : "");
	return -1;
}

int
it_session_open(const struct it_fixture *fx, int family, const struct it_target *t, char *err,
	size_t errlen)
{
	uint8_t msg[600];
	size_t n = 0;
	struct it_reply r;
	int fd = it_connect(family, fx->d.port);

	if (fd < 0) {
		snprintf(err, errlen, "connect to the daemon: %s", strerror(errno));
		return -1;
	}
	if (fx->user != NULL) {
		size_t ul = strlen(fx->user), pl = strlen(fx->pass);
		const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
		const uint8_t ok[] = { 0x01, 0x00 };
		if (it_send_all(fd, greet, sizeof(greet)) < 0 ||
			it_expect_raw(fd, chosen, 2, "method reply", err, errlen) < 0)
			goto fail;
		msg[n++] = 0x01;
		msg[n++] = (uint8_t)ul;
		memcpy(msg + n, fx->user, ul);
		n += ul;
		msg[n++] = (uint8_t)pl;
		memcpy(msg + n, fx->pass, pl);
		n += pl;
		if (it_send_all(fd, msg, n) < 0 ||
			it_expect_raw(fd, ok, 2, "auth status", err, errlen) < 0)
			goto fail;
	} else {
		const uint8_t greet[] = { 0x05, 0x01, 0x00 }, chosen[] = { 0x05, 0x00 };
		if (it_send_all(fd, greet, sizeof(greet)) < 0 ||
			it_expect_raw(fd, chosen, 2, "method reply", err, errlen) < 0)
			goto fail;
	}
	n = 0;
	msg[n++] = 0x05;
	msg[n++] = 0x01; /* CONNECT */
	msg[n++] = 0x00;
	n += it_target_addr(t, msg + n);
	if (it_send_all(fd, msg, n) < 0) {
		snprintf(err, errlen, "send request: %s", strerror(errno));
		goto fail;
	}
	if (it_read_reply(fd, &r, IT_IO_TIMEOUT_MS, err, errlen) < 0)
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
it_echo_check(int fd, size_t n, uint64_t seed, char *err, size_t errlen)
{
	uint8_t *out = malloc(n), *in = malloc(n);
	uint64_t st = seed;
	int r = -1;

	if (out == NULL || in == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	it_fill(out, n, &st);
	if (it_send_all(fd, out, n) < 0) {
		snprintf(err, errlen, "echo: send: %s", strerror(errno));
		goto out;
	}
	size_t got = it_recv_exact(fd, in, n, IT_IO_TIMEOUT_MS);
	if (got < n) {
		snprintf(err, errlen, "echo: got %zu of %zu bytes (%s)", got, n,
			errno ? strerror(errno) : "EOF");
		goto out;
	}
	if (memcmp(in, out, n) != 0) {
		snprintf(err, errlen, "echo: %zu bytes came back altered", n);
		goto out;
	}
	r = 0;
out:
	free(out);
	free(in);
	return r;
}

/* ---- asserting wrappers ------------------------------------------------ */

static void __attribute__((noreturn, format(printf, 3, 4)))
it_fail_at(const char *file, int line, const char *fmt, ...)
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
it_open_tunnel_at(const struct it_fixture *fx, int family, const struct it_target *t,
	const char *file, int line)
{
	char err[256];
	int fd = it_session_open(fx, family, t, err, sizeof(err));

	if (fd < 0)
		it_fail_at(file, line, "session through the daemon: %s", err);
	return fd;
}

void
it_expect_echo_at(int fd, size_t n, uint64_t seed, const char *file, int line)
{
	char err[256];

	if (it_echo_check(fd, n, seed, err, sizeof(err)) < 0)
		it_fail_at(file, line, "%s", err);
}

void
it_expect_bytes_at(int fd, const void *want, size_t n, const char *file, int line)
{
	char err[512];

	if (it_expect_raw(fd, want, n, "bytes", err, sizeof(err)) < 0)
		it_fail_at(file, line, "%s", err);
}

void
it_expect_close_at(int fd, int timeout_ms, const char *file, int line)
{
	enum it_close c = it_wait_close(fd, timeout_ms);

	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		it_fail_at(file, line, "want the daemon to close within %d ms, got %s", timeout_ms,
			it_close_str(c));
}

void
it_send_bytes_at(int fd, const void *p, size_t n, const char *file, int line)
{
	if (it_send_all(fd, p, n) < 0)
		it_fail_at(file, line, "send %zu bytes: %s", n, strerror(errno));
}

void
it_send_slowly_at(int fd, const void *p, size_t n, const char *file, int line)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		if (it_send_all(fd, b + i, 1) < 0)
			it_fail_at(file, line, "send byte %zu of %zu: %s", i, n, strerror(errno));
		it_sleep_ms(3);
	}
}

void
it_assert_mem_at(const void *got, const void *want, size_t n, const char *what, const char *file,
	int line)
{
	if (memcmp(got, want, n) != 0) {
		char hg[200], hw[200];
		it_hex(got, n, hg, sizeof(hg));
		it_hex(want, n, hw, sizeof(hw));
		it_fail_at(file, line, "%s: want [%s], got [%s]", what, hw, hg);
	}
}
