/*
 * Parent proxies (issue 19): a rule's `via` chains sessions through a second
 * socks5d (with and without a password), through a minimal HTTP CONNECT
 * proxy of this file (with and without Basic credentials), and down a
 * failover list past a dead parent, which is marked down once (log, metrics)
 * and then skipped. Names reach the parent unresolved; a parent's REP and an
 * HTTP status reach the client as the nearest SOCKS reply; BIND works
 * through a SOCKS5 parent; curl fetches intact through the chain. Each test
 * starts its own child daemon; the parents run for the whole group.
 */
#include "harness.h"
#include "it_acl_util.h"
#include "it_scale_util.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- a minimal HTTP CONNECT proxy ------------------------------------------ */

/* One process (a process group of its own) forking one child per client;
 * want_auth: the Proxy-Authorization line it requires, "" for none. */
struct hproxy {
	pid_t pid;
	uint16_t port;
};

static void
hproxy_pump(int a, int b)
{
	struct pollfd p[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };
	char buf[16384];
	int open = 2;

	while (open > 0 && poll(p, 2, 30000) > 0) {
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				shutdown(p[1 - i].fd, SHUT_WR);
				p[i].fd = -1;
				open--;
			} else if (write(p[1 - i].fd, buf, (size_t)n) != n) {
				return;
			}
		}
	}
}

static int
hproxy_dial(const char *hostport)
{
	char host[300];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int fd;

	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return -1;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static void
hproxy_say(int c, const char *s)
{
	(void)!write(c, s, strlen(s));
}

static void
hproxy_serve(int c, const char *want_auth)
{
	char head[4096], target[300];
	size_t n = 0;
	int t;

	while (n + 1 < sizeof(head) && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0)) {
		if (read(c, head + n, 1) != 1)
			_exit(0);
		n++;
	}
	head[n] = '\0';
	if (sscanf(head, "CONNECT %299s HTTP/1.", target) != 1) {
		hproxy_say(c, "HTTP/1.1 400 Bad Request\r\n\r\n");
		_exit(0);
	}
	if (want_auth[0] && !strstr(head, want_auth)) {
		hproxy_say(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
		_exit(0);
	}
	if ((t = hproxy_dial(target)) < 0) {
		hproxy_say(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n");
		_exit(0);
	}
	hproxy_say(c, "HTTP/1.1 200 Connection established\r\nVia: 1.1 it\r\n\r\n");
	hproxy_pump(c, t);
	_exit(0);
}

static int
hproxy_start(struct hproxy *h, const char *want_auth)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	h->port = it_acl_free_port();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(h->port);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0) {
		perror("hproxy");
		return -1;
	}
	if ((h->pid = fork()) < 0)
		return -1;
	if (h->pid == 0) {
		setpgid(0, 0);
		signal(SIGCHLD, SIG_IGN); /* no zombies */
		for (;;) {
			int c = accept(lfd, NULL, NULL);

			if (c >= 0 && fork() == 0) {
				close(lfd);
				hproxy_serve(c, want_auth);
			}
			if (c >= 0)
				close(c);
		}
	}
	setpgid(h->pid, h->pid);
	close(lfd);
	return 0;
}

static void
hproxy_stop(struct hproxy *h)
{
	if (h->pid <= 0)
		return;
	kill(-h->pid, SIGKILL);
	waitpid(h->pid, NULL, 0);
	h->pid = 0;
}

/* --- the group's parents ----------------------------------------------------- */

static struct it_daemon parent_pw;   /* socks5d, user pu / pp */
static struct it_daemon parent_open; /* socks5d, no authentication */
static struct hproxy http_pw;        /* wants bob:secret */
static struct hproxy http_open;

/* "bob:secret" in Basic. */
#define HTTP_AUTH_LINE "Proxy-Authorization: Basic Ym9iOnNlY3JldA=="

/* A child daemon whose config is the printf of fmt; fails the test when it
 * does not start. */
static void child_start(struct it_daemon *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
child_start(struct it_daemon *c, const char *fmt, ...)
{
	char conf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(conf, sizeof(conf), fmt, ap);
	va_end(ap);
	memset(c, 0, sizeof(*c));
	if (it_daemon_start(c, conf) != 0)
		fail_msg("child daemon did not start with:\n%s", conf);
}

static void
child_stop(struct it_daemon *c)
{
	if (it_daemon_stop(c) != 0)
		fail_msg("child daemon did not exit cleanly");
}

/* A session through daemon port to t (CONNECT by address), echo-checked. */
static void
echo_through(uint16_t port, size_t n)
{
	struct it_acl_client cl = { .port = port };
	int fd = it_acl_open(&cl, &it_tg.echo4);

	it_expect_echo(fd, n, 0x1919 + n);
	it_close(fd);
}

/* CONNECT to addr (ATYP ADDR PORT) through daemon port; returns the fd
 * after a reply with REP rep (the caller closes it). */
static int
request_rep(uint16_t port, const uint8_t *addr, size_t len, uint8_t rep)
{
	struct it_reply r;
	char err[200];
	int fd = it_acl_dial(NULL, port, NULL, 0, err, sizeof(err));

	if (fd < 0 || it_acl_auth(fd, NULL, NULL, err, sizeof(err)) < 0 ||
		it_acl_request(fd, 0x01, addr, len, &r, err, sizeof(err)) < 0)
		fail_msg("request: %s", err);
	if (r.rep != rep)
		fail_msg("REP %02x, want %02x", r.rep, rep);
	return fd;
}

/* --- tests --------------------------------------------------------------------- */

/* Through a second socks5d that wants a password: data intact both ways,
 * the name reaches the parent unresolved, the parent saw our user. */
static void
test_chain_through_socks5d_with_password(void **state)
{
	struct it_daemon c;
	uint8_t addr[300];
	size_t n = it_acl_addr_name(addr, "localhost", it_tg.echo4.port);
	char want[64];
	int fd;

	(void)it_fx(state);
	child_start(&c, "log-level info\nrule allow via socks5://pu:pp@127.0.0.1:%u\n",
		parent_pw.port);
	echo_through(c.port, 1u << 20);
	fd = request_rep(c.port, addr, n, 0x00);
	it_expect_echo(fd, 4096, 7);
	it_close(fd);
	snprintf(want, sizeof(want), "user=pu cmd=connect target=localhost:%u", it_tg.echo4.port);
	it_acl_expect_log(&parent_pw, want, 3000);
	child_stop(&c);
}

static void
test_chain_through_socks5d_without_password(void **state)
{
	struct it_daemon c;

	(void)it_fx(state);
	child_start(&c, "rule allow via socks5://127.0.0.1:%u\n", parent_open.port);
	echo_through(c.port, 1u << 20);
	child_stop(&c);
}

/* HTTP CONNECT with and without Basic credentials; a wrong password is the
 * parent's refusal (REP 01, said in the log). */
static void
test_http_parent_with_and_without_password(void **state)
{
	struct it_daemon a, b, wrong;
	uint8_t addr[32];
	size_t n = it_target_addr(&it_tg.echo4, addr);

	(void)it_fx(state);
	child_start(&a, "rule allow via http://bob:secret@127.0.0.1:%u\n", http_pw.port);
	child_start(&b, "rule allow via http://127.0.0.1:%u\n", http_open.port);
	child_start(&wrong, "log-level info\nrule allow via http://bob:guess@127.0.0.1:%u\n",
		http_pw.port);
	echo_through(a.port, 1u << 20);
	echo_through(b.port, 1u << 20);
	it_close(request_rep(wrong.port, addr, n, 0x01));
	it_acl_expect_log(&wrong, "failed: parent refused our password", 3000);
	child_stop(&a);
	child_stop(&b);
	child_stop(&wrong);
}

/* What a parent says about the target is passed on: a SOCKS5 parent's
 * "connection refused" as 05, an HTTP 502 as 04, and the parent is not
 * blamed (no failure counted). */
static void
test_parent_reply_reaches_the_client(void **state)
{
	struct it_daemon s5, http;
	uint8_t addr[16];
	size_t n = it_acl_addr4(addr, "127.0.0.1", it_tg.closed_port4);

	(void)it_fx(state);
	child_start(&s5, "log-level info\nrule allow via socks5://127.0.0.1:%u\n",
		parent_open.port);
	child_start(&http, "log-level info\nrule allow via http://127.0.0.1:%u\n", http_open.port);
	it_close(request_rep(s5.port, addr, n, 0x05));
	it_close(request_rep(http.port, addr, n, 0x04));
	it_acl_expect_log(&s5, "end=\"connection refused\"", 3000);
	assert_int_equal(it_acl_log_count(&s5, "failed:"), 0);
	assert_int_equal(it_acl_log_count(&http, "failed:"), 0);
	child_stop(&s5);
	child_stop(&http);
}

/* A failover list whose first parent is dead: every session gets through
 * the second; after parent-down-after failures the dead one is marked down
 * (logged once) and skipped, which the metrics show. */
static void
test_failover_past_a_dead_parent_marked_down(void **state)
{
	struct it_daemon c;
	uint16_t mport = it_acl_free_port();
	unsigned long long fails = 0, up = 9, ok = 0;
	char dead[80], name[160], *body = NULL;

	(void)it_fx(state);
	snprintf(dead, sizeof(dead), "socks5://127.0.0.1:%u", it_tg.closed_port4);
	child_start(&c,
		"log-level info\nmetrics 127.0.0.1:%u\nparent-down-after 2\nparent-down-for 600\n"
		"rule allow via %s,http://127.0.0.1:%u\n",
		mport, dead, http_open.port);
	for (int i = 0; i < 6; i++)
		echo_through(c.port, 1000);
	snprintf(name, sizeof(name), "parent %s is down for 600 s after 2 failures in a row", dead);
	assert_int_equal(it_acl_log_count(&c, name), 1);
	snprintf(name, sizeof(name), "parent %s failed", dead);
	assert_int_equal(it_acl_log_count(&c, name), 2); /* then skipped */
	assert_int_equal(
		it_scale_http(mport, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body, 3000), 200);
	snprintf(name, sizeof(name), "socks5d_parent_failures_total{parent=\"%s\"}", dead);
	assert_true(it_scale_metric(body, name, &fails));
	snprintf(name, sizeof(name), "socks5d_parent_up{parent=\"%s\"}", dead);
	assert_true(it_scale_metric(body, name, &up));
	snprintf(name, sizeof(name),
		"socks5d_parent_sessions_total{parent=\"http://127.0.0.1:%u\"}", http_open.port);
	assert_true(it_scale_metric(body, name, &ok));
	free(body);
	assert_int_equal(fails, 2);
	assert_int_equal(up, 0);
	assert_int_equal(ok, 6);
	child_stop(&c);
}

/* A parent that takes the connection and never answers: after its share of
 * timeout connect the next parent carries the session. */
static void
test_silent_parent_times_out_to_the_next(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct it_daemon c;

	(void)it_fx(state);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(silent, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(silent, 8), 0); /* never accepted: never answers */
	assert_int_equal(getsockname(silent, (struct sockaddr *)&a, &len), 0);
	child_start(&c,
		"log-level info\ntimeout connect 4\nrule allow via socks5://127.0.0.1:%u,"
		"socks5://127.0.0.1:%u\n",
		ntohs(a.sin_port), parent_open.port);
	echo_through(c.port, 4096);
	it_acl_expect_log(&c, "failed: timeout", 3000);
	close(silent);
	child_stop(&c);
}

/* BIND through a SOCKS5 parent: the first reply names the parent's
 * listener, the peer that connects there is named in the second, and data
 * flows both ways. */
static void
test_bind_through_a_parent(void **state)
{
	struct it_daemon c;
	const uint8_t req[] = { 0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1, 0, 0 };
	struct it_reply first, second;
	char err[200];
	int fd, peer;

	(void)it_fx(state);
	child_start(&c, "rule allow via socks5://127.0.0.1:%u\n", parent_open.port);
	fd = it_acl_dial(NULL, c.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(it_acl_auth(fd, NULL, NULL, err, sizeof(err)), 0);
	it_send_bytes(fd, req, sizeof(req));
	it_expect_reply(fd, &first, IT_IO_TIMEOUT_MS);
	assert_int_equal(first.rep, 0x00);
	assert_int_equal(first.atyp, 0x01);
	peer = it_connect_addr("127.0.0.1", first.port, NULL);
	assert_true(peer >= 0);
	it_expect_reply(fd, &second, IT_IO_TIMEOUT_MS);
	assert_int_equal(second.rep, 0x00);
	assert_int_equal(second.port, it_local_port(peer));
	if (it_exchange(fd, peer, 1u << 20, 11, 12, 10000, err, sizeof(err)) < 0)
		fail_msg("bind relay through the parent: %s", err);
	it_close(peer);
	it_close(fd);
	child_stop(&c);
}

/* UDP ASSOCIATE through a SOCKS5 parent: datagrams to an address and to a
 * name (unresolved: the parent looks it up) come back from the echo with
 * the header naming it, and the parent saw the datagrams. */
static void
test_udp_through_a_parent(void **state)
{
	const uint8_t req[] = { 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	uint8_t dg[64], want[64], got[128];
	struct it_daemon c;
	struct it_reply r;
	char err[200], relay[32], line[96];
	int fd, u;
	size_t n;

	(void)it_fx(state);
	child_start(&c, "rule allow via socks5://127.0.0.1:%u\n", parent_open.port);
	fd = it_acl_dial(NULL, c.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(it_acl_auth(fd, NULL, NULL, err, sizeof(err)), 0);
	it_send_bytes(fd, req, sizeof(req));
	it_expect_reply(fd, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	snprintf(relay, sizeof(relay), "%u.%u.%u.%u", r.addr[0], r.addr[1], r.addr[2], r.addr[3]);
	u = it_udp_socket("127.0.0.1", 0);
	assert_true(u >= 0);
	/* The echo's answer names the echo: 00 00 00 01 127.0.0.1 port. */
	n = it_acl_addr4(want + 3, "127.0.0.1", it_tg.udp_echo4.port);
	want[0] = want[1] = want[2] = 0;
	for (int named = 0; named < 2; named++) {
		size_t h = named ? it_acl_addr_name(dg + 3, "localhost", it_tg.udp_echo4.port) : n;

		if (!named)
			memcpy(dg + 3, want + 3, n);
		dg[0] = dg[1] = dg[2] = 0;
		memcpy(dg + 3 + h, "via-parent", 10);
		assert_int_equal(it_udp_send(u, relay, r.port, dg, 3 + h + 10), 0);
		assert_int_equal(it_udp_recv(u, got, sizeof(got), 5000), (long)(3 + n + 10));
		memcpy(want + 3 + n, "via-parent", 10);
		it_assert_mem(got, want, 3 + n + 10, "datagram back through the parent");
	}
	it_close(u);
	it_close(fd);
	snprintf(line, sizeof(line), "cmd=udp-associate");
	it_acl_expect_log(&parent_open, "dgrams_up=2 dgrams_down=2", 5000);
	assert_true(it_acl_log_count(&parent_open, line) >= 1);
	child_stop(&c);
}

/* curl through socks5d and on through each kind of parent. */
static void
test_curl_through_each_parent(void **state)
{
	char path[256], proxy[32], url[96], conf[200];
	char *argv[] = { path, "-sS", "--fail", "--max-time", "10", "--noproxy", "",
		"--socks5-hostname", proxy, url, NULL };
	struct it_daemon c;
	struct it_hash hs;

	(void)it_fx(state);
	if (!it_find_program("curl", path, sizeof(path))) {
		print_message("[   INFO   ] skipped: curl is not installed\n");
		skip();
	}
	for (int kind = 0; kind < 3; kind++) {
		if (kind == 0)
			snprintf(conf, sizeof(conf), "socks5://pu:pp@127.0.0.1:%u", parent_pw.port);
		else if (kind == 1)
			snprintf(conf, sizeof(conf), "socks4://127.0.0.1:%u", parent_open.port);
		else
			snprintf(conf, sizeof(conf), "http://bob:secret@127.0.0.1:%u",
				http_pw.port);
		child_start(&c, "rule allow via %s\n", conf);
		snprintf(proxy, sizeof(proxy), "127.0.0.1:%u", c.port);
		snprintf(url, sizeof(url), "http://localhost:%u/blob", it_tg.http4.port);
		int st = it_run_program(argv, 15000, &hs);
		if (st != 0)
			fail_msg("curl via %s: exit status %d", conf, st);
		assert_int_equal(hs.n, IT_HTTP_BYTES);
		if (hs.h != it_stream_hash(IT_HTTP_SEED, IT_HTTP_BYTES))
			fail_msg("curl via %s: the body came back altered", conf);
		child_stop(&c);
	}
}

static int
setup(void **state)
{
	if (!it_server_has(IT_CAP_RESOLVER)) /* socks5d's own feature */
		return it_fixture_start_for(state, IT_CAP_RESOLVER, "auth none\n", NULL, NULL);
	if (it_daemon_start(&parent_pw, "auth password\nuser pu pp\nlog-level info\n") != 0 ||
		it_daemon_start(&parent_open, "socks4 on\nlog-level info\n") != 0 ||
		hproxy_start(&http_pw, HTTP_AUTH_LINE) < 0 || hproxy_start(&http_open, "") < 0)
		return -1;
	return it_fixture_start_for(state, IT_CAP_RESOLVER, "auth none\n", NULL, NULL);
}

static int
teardown(void **state)
{
	hproxy_stop(&http_pw);
	hproxy_stop(&http_open);
	if (parent_pw.pid > 0 && it_daemon_stop(&parent_pw) != 0)
		it_harness_failures++;
	if (parent_open.pid > 0 && it_daemon_stop(&parent_open) != 0)
		it_harness_failures++;
	return it_fixture_stop(state);
}

int
it_run_parent_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_chain_through_socks5d_with_password),
		IT_TEST(test_chain_through_socks5d_without_password),
		IT_TEST(test_http_parent_with_and_without_password),
		IT_TEST(test_parent_reply_reaches_the_client),
		IT_TEST(test_failover_past_a_dead_parent_marked_down),
		IT_TEST(test_silent_parent_times_out_to_the_next),
		IT_TEST(test_bind_through_a_parent),
		IT_TEST(test_udp_through_a_parent),
		IT_TEST(test_curl_through_each_parent),
	};

	return cmocka_run_group_tests_name("parent", tests, setup, teardown);
}
