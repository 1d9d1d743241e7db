/*
 * targets: the servers the proxy connects to. Each runs in a forked child on
 * an ephemeral loopback port and forks once more per connection, so a slow
 * or stuck session never blocks another and the test process keeps a single
 * thread. Every process is bounded: it dies with its parent
 * (PR_SET_PDEATHSIG), by alarm(), and on a socket timeout. The UDP echo
 * targets are one process each (a datagram needs no connection state).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define IT_TARGET_LIFETIME_S 300 /* the whole suite takes well under this */
#define IT_CONN_LIFETIME_S 60
#define IT_CONN_IDLE_S 20

struct it_targets it_tg = { .closed_fd = -1 };

static int
it_tgt_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static ssize_t
it_tgt_read(int fd, void *p, size_t n)
{
	ssize_t r;

	do
		r = recv(fd, p, n, 0);
	while (r < 0 && errno == EINTR);
	return r;
}

static void
it_serve_echo(int fd)
{
	uint8_t buf[65536];
	ssize_t r;

	while ((r = it_tgt_read(fd, buf, sizeof(buf))) > 0)
		if (it_tgt_write_all(fd, buf, (size_t)r) < 0)
			return;
}

/* The address the proxy connected from, as SOCKS ATYP ADDR PORT, so a test
 * can compare it with the BND of the reply byte for byte. */
static void
it_serve_peer(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	uint8_t out[19], drain[256];
	size_t n = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		out[n++] = 0x01;
		memcpy(out + n, &sin->sin_addr, 4);
		n += 4;
		memcpy(out + n, &sin->sin_port, 2);
		n += 2;
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		out[n++] = 0x04;
		memcpy(out + n, &sin6->sin6_addr, 16);
		n += 16;
		memcpy(out + n, &sin6->sin6_port, 2);
		n += 2;
	}
	if (it_tgt_write_all(fd, out, n) < 0)
		return;
	shutdown(fd, SHUT_WR);
	/* Wait for the other side's close so ours is a FIN, not a RST. */
	while (it_tgt_read(fd, drain, sizeof(drain)) > 0)
		;
}

static void
it_reply_count_hash(int fd, const struct it_hash *hs)
{
	uint8_t out[16];

	it_put_be64(out, hs->n);
	it_put_be64(out + 8, hs->h);
	(void)it_tgt_write_all(fd, out, sizeof(out));
}

static void
it_serve_sink(int fd)
{
	uint8_t buf[65536], hdr[8];
	struct it_hash hs;
	size_t got = 0;
	uint64_t want;

	while (got < sizeof(hdr)) {
		ssize_t r = it_tgt_read(fd, hdr + got, sizeof(hdr) - got);
		if (r <= 0)
			return;
		got += (size_t)r;
	}
	want = it_get_be64(hdr);
	it_hash_init(&hs);
	while (hs.n < want) {
		size_t k = want - hs.n < sizeof(buf) ? (size_t)(want - hs.n) : sizeof(buf);
		ssize_t r = it_tgt_read(fd, buf, k);
		if (r <= 0)
			break; /* short: the reply's count says so */
		it_hash_update(&hs, buf, (size_t)r);
	}
	it_reply_count_hash(fd, &hs);
	shutdown(fd, SHUT_WR);
	while (it_tgt_read(fd, buf, sizeof(buf)) > 0)
		;
}

static void
it_serve_source(int fd)
{
	uint8_t buf[65536];
	uint64_t st = IT_SOURCE_SEED;
	size_t left = IT_SOURCE_BYTES;

	while (left > 0) {
		size_t k = left < sizeof(buf) ? left : sizeof(buf);
		it_fill(buf, k, &st);
		if (it_tgt_write_all(fd, buf, k) < 0)
			return;
		left -= k;
	}
}

static void
it_serve_eof_reply(int fd)
{
	uint8_t buf[65536];
	struct it_hash hs;
	ssize_t r;

	it_hash_init(&hs);
	while ((r = it_tgt_read(fd, buf, sizeof(buf))) > 0)
		it_hash_update(&hs, buf, (size_t)r);
	if (r < 0)
		return; /* timeout or reset: no EOF, so no reply */
	it_reply_count_hash(fd, &hs);
}

/* Minimal HTTP/1.0: reads the request head (bounded), answers 200 with a
 * known body whatever was asked, closes. Enough for curl. */
static void
it_serve_http(int fd)
{
	char head[8192], hdr[160];
	uint8_t buf[65536];
	size_t got = 0;
	uint64_t st = IT_HTTP_SEED;
	size_t left = IT_HTTP_BYTES;

	for (;;) {
		ssize_t r = it_tgt_read(fd, head + got, sizeof(head) - 1 - got);
		if (r <= 0)
			return;
		got += (size_t)r;
		head[got] = '\0';
		if (strstr(head, "\r\n\r\n") != NULL)
			break;
		if (got == sizeof(head) - 1)
			return;
	}
	int n = snprintf(hdr, sizeof(hdr),
		"HTTP/1.0 200 OK\r\nContent-Type: "
		"application/octet-stream\r\nContent-Length: %u\r\nConnection: close\r\n\r\n",
		IT_HTTP_BYTES);
	if (it_tgt_write_all(fd, hdr, (size_t)n) < 0)
		return;
	while (left > 0) {
		size_t k = left < sizeof(buf) ? left : sizeof(buf);
		it_fill(buf, k, &st);
		if (it_tgt_write_all(fd, buf, k) < 0)
			return;
		left -= k;
	}
	shutdown(fd, SHUT_WR);
	while (it_tgt_read(fd, buf, sizeof(buf)) > 0)
		;
}

static void
it_serve(int fd, enum it_target_kind kind)
{
	struct timeval tv = { .tv_sec = IT_CONN_IDLE_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	switch (kind) {
	case IT_TARGET_ECHO:
		it_serve_echo(fd);
		break;
	case IT_TARGET_PEER:
		it_serve_peer(fd);
		break;
	case IT_TARGET_SINK:
		it_serve_sink(fd);
		break;
	case IT_TARGET_SOURCE:
		it_serve_source(fd);
		break;
	case IT_TARGET_EOF_REPLY:
		it_serve_eof_reply(fd);
		break;
	case IT_TARGET_HTTP:
		it_serve_http(fd);
		break;
	}
	close(fd);
}

static void __attribute__((noreturn))
it_target_main(int lfd, enum it_target_kind kind, pid_t parent)
{
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	/* Sockets of the test process must not stay open in here. */
	if (lfd > 3)
		close_range(3, (unsigned)lfd - 1, 0);
	close_range((unsigned)lfd + 1, ~0U, 0);
	signal(SIGCHLD, SIG_IGN); /* connection handlers reap themselves */
	signal(SIGPIPE, SIG_IGN);
	alarm(IT_TARGET_LIFETIME_S);
	for (;;) {
		int cfd = accept(lfd, NULL, NULL);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			_exit(1);
		}
		pid_t me = getpid();
		pid_t pid = fork();
		if (pid == 0) {
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != me)
				_exit(0);
			close(lfd);
			alarm(IT_CONN_LIFETIME_S);
			it_serve(cfd, kind);
			_exit(0);
		}
		close(cfd); /* fork failure drops this one connection */
	}
}

static int
it_target_start(struct it_target *t, int family, enum it_target_kind kind)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int fd;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0 ||
		getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	t->family = family;
	t->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					  : ((struct sockaddr_in6 *)&ss)->sin6_port);
	pid_t parent = getpid();
	t->pid = fork();
	if (t->pid == 0)
		it_target_main(fd, kind, parent);
	close(fd);
	return t->pid > 0 ? 0 : -1;
}

/* UDP echo: every datagram goes back to its sender unchanged, one process,
 * no state. Large buffers so that a test's burst is never dropped here. */
static void __attribute__((noreturn)) it_udp_echo_main(int fd, pid_t parent)
{
	static uint8_t buf[65536];

	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	if (fd > 3)
		close_range(3, (unsigned)fd - 1, 0);
	close_range((unsigned)fd + 1, ~0U, 0);
	alarm(IT_TARGET_LIFETIME_S);
	for (;;) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (r < 0) {
			if (errno == EINTR || errno == ECONNREFUSED)
				continue;
			_exit(1);
		}
		(void)sendto(fd, buf, (size_t)r, 0, (struct sockaddr *)&from, flen);
	}
}

static int
it_udp_target_start(struct it_target *t, int family)
{
	const char *ip = family == AF_INET ? "127.0.0.1" : "::1";
	int fd = it_udp_socket(ip, 0);

	if (fd < 0)
		return -1;
	t->family = family;
	t->port = it_local_port(fd);
	pid_t parent = getpid();
	t->pid = fork();
	if (t->pid == 0)
		it_udp_echo_main(fd, parent);
	it_close(fd);
	return t->pid > 0 && t->port != 0 ? 0 : -1;
}

static int
it_closed_port_start(struct it_targets *tg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	/* Bound but never listening: a SYN to it is answered with RST, and
	 * keeping it bound stops anyone else from taking the port meanwhile. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	tg->closed_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tg->closed_fd < 0 || bind(tg->closed_fd, (struct sockaddr *)&sin, len) < 0 ||
		getsockname(tg->closed_fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	tg->closed_port4 = ntohs(sin.sin_port);
	return 0;
}

int
it_targets_start(struct it_targets *tg)
{
	int r = 0;

	r |= it_target_start(&tg->echo4, AF_INET, IT_TARGET_ECHO);
	r |= it_target_start(&tg->peer4, AF_INET, IT_TARGET_PEER);
	r |= it_target_start(&tg->sink4, AF_INET, IT_TARGET_SINK);
	r |= it_target_start(&tg->source4, AF_INET, IT_TARGET_SOURCE);
	r |= it_target_start(&tg->eof_reply4, AF_INET, IT_TARGET_EOF_REPLY);
	r |= it_target_start(&tg->http4, AF_INET, IT_TARGET_HTTP);
	r |= it_udp_target_start(&tg->udp_echo4, AF_INET);
	if (it_have_ipv6()) {
		r |= it_target_start(&tg->echo6, AF_INET6, IT_TARGET_ECHO);
		r |= it_target_start(&tg->peer6, AF_INET6, IT_TARGET_PEER);
		r |= it_udp_target_start(&tg->udp_echo6, AF_INET6);
	}
	r |= it_closed_port_start(tg);
	if (r != 0) {
		fprintf(stderr, "cannot start the target servers: %s\n", strerror(errno));
		it_targets_stop(tg);
		return -1;
	}
	return 0;
}

static void
it_target_stop(struct it_target *t)
{
	int status;

	if (t->pid <= 0)
		return;
	kill(t->pid, SIGKILL); /* its connection handlers follow (PDEATHSIG) */
	waitpid(t->pid, &status, 0);
	t->pid = 0;
}

void
it_targets_stop(struct it_targets *tg)
{
	it_target_stop(&tg->echo4);
	it_target_stop(&tg->echo6);
	it_target_stop(&tg->peer4);
	it_target_stop(&tg->peer6);
	it_target_stop(&tg->sink4);
	it_target_stop(&tg->source4);
	it_target_stop(&tg->eof_reply4);
	it_target_stop(&tg->http4);
	it_target_stop(&tg->udp_echo4);
	it_target_stop(&tg->udp_echo6);
	if (tg->closed_fd >= 0)
		close(tg->closed_fd);
	tg->closed_fd = -1;
}
