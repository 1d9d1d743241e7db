/*
 * Scaling features against the real daemon (issue 10): descriptor
 * exhaustion (shed new clients at once, keep serving the others, do not
 * spin, recover), "workers 2" (both serve, each has its own metrics
 * endpoint, a killed worker is restarted while sessions go on, SIGHUP
 * reaches both), PROXY protocol listeners (v1
 * and v2 headers name the client for logs and rules; no header, a bad one
 * or an untrusted sender is closed), a real HAProxy with send-proxy-v2 in
 * front of two daemons, and the Prometheus endpoint's counters moving by
 * exactly the traffic a test made.
 */
#include "it_acl_util.h"
#include "it_scale_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* microsocks has none of this (see test_access.c). */
#define SOCKS5D_ONLY IT_CAP_RESOLVER

/* ======================================================================
 * descriptor exhaustion
 * ====================================================================== */

#define FD_LIMIT 64
#define FD_MAX_SESSIONS 64
#define FD_MAX_IDLE 4

enum attempt {
	ATTEMPT_OK,    /* CONNECT succeeded */
	ATTEMPT_SHED,  /* closed with no byte sent to us */
	ATTEMPT_REP01, /* greeted, then CONNECT got REP 01 */
	ATTEMPT_OTHER, /* anything else (err says what) */
};

/* A whole session (no auth, CONNECT echo4), classified. */
static enum attempt
attempt_session(uint16_t port, int *out, char *err, size_t errlen)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	uint8_t got[2], addr[32];
	struct it_reply r;
	size_t k;
	int fd = it_acl_dial(NULL, port, NULL, 0, err, errlen);

	if (fd < 0)
		return ATTEMPT_OTHER;
	(void)it_send_all(fd, greet, sizeof(greet));
	k = it_recv_exact(fd, got, 2, 2000);
	if (k == 0 && errno != ETIMEDOUT) {
		it_close(fd);
		return ATTEMPT_SHED;
	}
	if (k != 2 || got[0] != 0x05 || got[1] != 0x00) {
		snprintf(err, errlen, "greeting: got %zu bytes (%02x %02x), errno %s", k, got[0],
			got[1], strerror(errno));
		it_close(fd);
		return ATTEMPT_OTHER;
	}
	if (it_acl_request(fd, 0x01, addr, it_target_addr(&it_tg.echo4, addr), &r, err, errlen) <
		0) {
		it_close(fd);
		return ATTEMPT_OTHER;
	}
	if (r.rep == 0x00) {
		*out = fd;
		return ATTEMPT_OK;
	}
	snprintf(err, errlen, "CONNECT: REP %02x", r.rep);
	it_close(fd);
	return r.rep == 0x01 ? ATTEMPT_REP01 : ATTEMPT_OTHER;
}

/* A client that only greets (one descriptor in the daemon). Returns its
 * fd, or -1 when it was shed; fails the test on anything else. */
static int
greeted_only(uint16_t port)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	uint8_t got[2];
	char err[256];
	size_t k;
	int fd = it_acl_dial(NULL, port, NULL, 0, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s", err);
	(void)it_send_all(fd, greet, sizeof(greet));
	k = it_recv_exact(fd, got, 2, 2000);
	if (k == 0 && errno != ETIMEDOUT) {
		it_close(fd);
		return -1;
	}
	if (k != 2 || got[0] != 0x05 || got[1] != 0x00)
		fail_msg("greeting at the descriptor limit: got %zu bytes, %s; want 05 00 or a "
			 "close with nothing",
			k, k ? "wrong" : strerror(errno));
	return fd;
}

static void
test_fd_exhaustion_sheds_new_clients_without_spinning_and_recovers(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .port = fx->d.port };
	int fds[FD_MAX_SESSIONS], n = 0, idle[FD_MAX_IDLE], nidle = 0, pending[4];
	enum attempt a = ATTEMPT_OTHER;
	char err[256] = "";
	long long cpu0, cpu1;

	/* setup_fd started the daemon with RLIMIT_NOFILE 64: sessions take
	 * two descriptors each until one cannot get both. */
	print_message("[   INFO   ] daemon holds %d descriptors of %d\n",
		it_scale_fd_count(fx->d.pid), FD_LIMIT);
	while (n < FD_MAX_SESSIONS) {
		int fd = -1;
		a = attempt_session(fx->d.port, &fd, err, sizeof(err));
		if (a != ATTEMPT_OK)
			break;
		fds[n++] = fd;
	}
	print_message("[   INFO   ] %d sessions open; the next one: %s; daemon holds %d "
		      "descriptors\n",
		n, a == ATTEMPT_SHED ? "shed" : err, it_scale_fd_count(fx->d.pid));
	/* Refused cleanly: shed at accept, or (one descriptor left for the
	 * client, none for its target) REP 01. */
	if (a != ATTEMPT_SHED && a != ATTEMPT_REP01)
		fail_msg("session %d at the descriptor limit: %s; want a close with nothing, "
			 "or REP 01",
			n + 1, err);
	assert_in_range(n, 20, FD_MAX_SESSIONS - 1);
	/* Clients that only greet take whatever single descriptors are left;
	 * then the listener has none and must shed. */
	while (nidle < FD_MAX_IDLE) {
		int fd = greeted_only(fx->d.port);
		if (fd < 0)
			break;
		idle[nidle++] = fd;
	}
	print_message("[   INFO   ] %d greeted-only clients fit before the first shed\n", nidle);
	if (nidle == FD_MAX_IDLE)
		fail_msg("%d more clients accepted at the descriptor limit, none shed", nidle);
	/* At the limit a new client is closed at once, not left in the
	 * backlog. */
	for (int i = 0; i < 3; i++) {
		int fd = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
		if (fd < 0)
			fail_msg("%s", err);
		it_acl_expect_shut(fd, 1000, "new client with every descriptor in use");
		it_close(fd);
	}
	for (int i = 0; i < n; i++)
		it_expect_echo(fds[i], 512, 100 + (uint64_t)i);
	/* Clients keep knocking while we watch the daemon's CPU time: a
	 * level-triggered listener it cannot accept from would spin. */
	cpu0 = it_scale_cpu_ms(fx->d.pid);
	for (int i = 0; i < 4; i++) {
		pending[i] = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
		it_sleep_ms(500);
	}
	cpu1 = it_scale_cpu_ms(fx->d.pid);
	for (int i = 0; i < 4; i++)
		it_close(pending[i]);
	print_message("[   INFO   ] daemon CPU over 2 s at the limit: %lld ms\n", cpu1 - cpu0);
	assert_true(cpu0 >= 0 && cpu1 >= 0);
	if (cpu1 - cpu0 >= 200)
		fail_msg("daemon used %lld ms of CPU in 2 s at the descriptor limit (want < 200: "
			 "not spinning)",
			cpu1 - cpu0);
	it_acl_expect_log(&fx->d, "accept: shedding new connections", 2000);
	/* Recovery: closing clients frees descriptors for new sessions. */
	while (nidle > 0)
		it_close(idle[--nidle]);
	for (int i = 0; i < 4; i++)
		it_close(fds[--n]);
	for (int i = 0; i < 2; i++) {
		int fd = it_acl_session_retry(&c, &it_tg.echo4, 3000, err, sizeof(err));
		if (fd < 0)
			fail_msg("no new session within 3 s of freeing descriptors: %s", err);
		it_expect_echo(fd, 4096, 200 + (uint64_t)i);
		fds[n++] = fd;
	}
	while (n > 0)
		it_close(fds[--n]);
}

static int
setup_fd(void **state)
{
	if (!it_server_has(SOCKS5D_ONLY))
		return it_fixture_start_for(state, SOCKS5D_ONLY, "", NULL, NULL);
	/* No max-connections: its default (from the descriptor limit) would
	 * refuse clients before the limit is reached, and the subject here is
	 * what happens at the limit itself. */
	return it_scale_fixture_start_nofile(state, "log-level info\nmax-connections 0\n",
		FD_LIMIT);
}

/* ======================================================================
 * workers
 * ====================================================================== */

static int
worker_lines(const struct it_fixture *fx, int worker, const char *what)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "worker %d: %s", worker, what);
	return it_acl_log_count(&fx->d, needle);
}

/* One short session; 0 or -1 with err. */
static int
short_session(const struct it_acl_client *c, uint64_t seed, char *err, size_t errlen)
{
	int fd = it_acl_session(c, &it_tg.echo4, err, errlen);

	if (fd < 0)
		return -1;
	int r = it_echo_check(fd, 100, seed, err, errlen);
	it_close(fd);
	return r;
}

static void
test_workers_share_500_sessions(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .port = fx->d.port };
	int before = it_acl_log_count(&fx->d, "session id="), failures = 0, w0, w1;
	char err[256];

	for (int i = 0; i < 500; i++) {
		if (short_session(&c, (uint64_t)i + 1, err, sizeof(err)) < 0) {
			if (failures++ == 0)
				print_error("session %d failed: %s\n", i, err);
		}
	}
	if (failures)
		fail_msg("%d of 500 sessions failed with workers 2", failures);
	/* Session lines are written when sessions end. */
	if (!it_acl_wait_log(&fx->d, "session id=", before + 500, 5000))
		fail_msg("fewer than 500 session lines logged within 5 s");
	w0 = worker_lines(fx, 0, "session id=");
	w1 = worker_lines(fx, 1, "session id=");
	print_message("[   INFO   ] sessions logged by worker 0: %d, worker 1: %d\n", w0, w1);
	if (w0 <= 0 || w1 <= 0)
		fail_msg("with workers 2 both must serve: worker 0 %d, worker 1 %d sessions", w0,
			w1);
}

static void
test_killed_worker_is_restarted_while_sessions_go_on(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .port = fx->d.port };
	pid_t kids[8], victim, survivor, fresh = 0;
	int nk = it_scale_children(fx->d.pid, kids, 8), ok = 0, ok_after = 0, failures = 0;
	uint64_t deadline, t_kill;
	char err[256];

	if (nk != 2)
		fail_msg("supervisor %d has %d worker processes, want 2", (int)fx->d.pid, nk);
	victim = kids[0];
	survivor = kids[1];
	t_kill = it_now_ms();
	assert_int_equal(kill(victim, SIGKILL), 0);
	/* Until it is gone its listening socket may still take connections
	 * it will never serve; from then on none may fail. */
	deadline = it_now_ms() + 2000;
	while (!it_scale_pid_gone(victim) && it_now_ms() < deadline)
		it_sleep_ms(5);
	deadline = it_now_ms() + 6000;
	while (it_now_ms() < deadline && ok_after < 10) {
		if (short_session(&c, (uint64_t)ok + 7, err, sizeof(err)) < 0) {
			if (failures++ == 0)
				print_error("session after the kill failed: %s\n", err);
		} else {
			ok++;
			ok_after += fresh != 0;
		}
		nk = fresh ? 0 : it_scale_children(fx->d.pid, kids, 8);
		if (nk == 2 && kids[0] != victim && kids[1] != victim) {
			fresh = kids[0] == survivor ? kids[1] : kids[0];
			print_message("[   INFO   ] worker pid %d replaced by %d after %llu ms "
				      "(%d sessions meanwhile)\n",
				(int)victim, (int)fresh, (unsigned long long)(it_now_ms() - t_kill),
				ok);
		}
		it_sleep_ms(20);
	}
	if (fresh == 0)
		fail_msg("no new worker within 6 s of killing worker pid %d", (int)victim);
	if (failures)
		fail_msg("%d sessions failed while a worker was being restarted", failures);
	assert_true(ok_after >= 10);
	it_acl_expect_log(&fx->d, "killed by signal 9", 2000);
}

static void
test_sighup_to_supervisor_reaches_both_workers(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int r0 = worker_lines(fx, 0, "reloaded"), r1 = worker_lines(fx, 1, "reloaded");
	uint64_t deadline;

	assert_int_equal(kill(fx->d.pid, SIGHUP), 0);
	deadline = it_now_ms() + 5000;
	while ((worker_lines(fx, 0, "reloaded") <= r0 || worker_lines(fx, 1, "reloaded") <= r1) &&
		it_now_ms() < deadline)
		it_sleep_ms(20);
	if (worker_lines(fx, 0, "reloaded") <= r0 || worker_lines(fx, 1, "reloaded") <= r1) {
		it_daemon_log_tail(&fx->d, 10);
		fail_msg("SIGHUP to the supervisor: worker 0 logged %d, worker 1 %d new "
			 "\"reloaded\" lines within 5 s, want 1 each",
			worker_lines(fx, 0, "reloaded") - r0, worker_lines(fx, 1, "reloaded") - r1);
	}
}

static uint16_t workers_metrics; /* worker i serves metrics on this + i */

/* connect/0x00 sessions worker w's own endpoint reports; -1 on failure. */
static long long
worker_sessions(int w)
{
	char key[128], *body = NULL;
	unsigned long long v = 0;
	int st = it_scale_http((uint16_t)(workers_metrics + w),
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body, 3000);

	snprintf(key, sizeof(key),
		"socks5d_sessions_total{worker=\"%d\",cmd=\"connect\",rep=\"0x00\"}", w);
	if (st != 200) {
		free(body);
		return -1;
	}
	(void)it_scale_metric(body, key, &v);
	free(body);
	return (long long)v;
}

static void
test_each_worker_serves_its_own_metrics_on_port_plus_index(void **state)
{
	uint64_t deadline = it_now_ms() + 3000;
	long long s0, s1;

	it_fx(state);
	/* After the 500 sessions: each worker counts its own, labelled. */
	for (;;) {
		s0 = worker_sessions(0);
		s1 = worker_sessions(1);
		if ((s0 >= 0 && s1 >= 0 && s0 + s1 >= 500) || it_now_ms() >= deadline)
			break;
		it_sleep_ms(20);
	}
	print_message("[   INFO   ] metrics: worker 0 on %u: %lld sessions, worker 1 on %u: %lld\n",
		workers_metrics, s0, workers_metrics + 1, s1);
	if (s0 < 0 || s1 < 0)
		fail_msg("GET /metrics: worker 0 on port %u %s, worker 1 on port %u %s",
			workers_metrics, s0 < 0 ? "failed" : "ok", workers_metrics + 1,
			s1 < 0 ? "failed" : "ok");
	if (s0 == 0 || s1 == 0 || s0 + s1 < 500)
		fail_msg("worker metrics count %lld + %lld connect sessions, want both > 0 and "
			 "at least 500 together",
			s0, s1);
}

static int
setup_workers(void **state)
{
	char conf[128];

	/* Two consecutive free ports for the two workers' endpoints. */
	for (int i = 0; i < 20 && workers_metrics == 0; i++) {
		uint16_t p = it_acl_free_port();
		if (p != 0 && it_acl_port_free((uint16_t)(p + 1)))
			workers_metrics = p;
	}
	if (workers_metrics == 0)
		return -1;
	snprintf(conf, sizeof(conf), "workers 2\nmetrics 127.0.0.1:%u\nlog-level info\n",
		workers_metrics);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

/* ======================================================================
 * PROXY protocol listener
 * ====================================================================== */

static uint16_t pp_port;

/* A session through the PROXY listener after hdr; echoes and closes, then
 * expects the session log line to name want_client. */
static void
proxied_session(const struct it_fixture *fx, const void *hdr, size_t n, bool slowly,
	const char *want_client)
{
	char err[256], needle[128];
	int fd = it_acl_dial(NULL, pp_port, NULL, 0, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s", err);
	if (slowly)
		it_send_slowly(fd, hdr, n);
	else
		it_send_bytes(fd, hdr, n);
	if (it_acl_auth(fd, NULL, NULL, err, sizeof(err)) < 0)
		fail_msg("greeting after the PROXY header: %s", err);
	{
		uint8_t addr[32];
		struct it_reply r;
		if (it_acl_request(fd, 0x01, addr, it_target_addr(&it_tg.echo4, addr), &r, err,
			    sizeof(err)) < 0)
			fail_msg("CONNECT after the PROXY header: %s", err);
		if (r.rep != 0x00)
			fail_msg("CONNECT after the PROXY header: REP %02x, want 00", r.rep);
	}
	it_expect_echo(fd, 4096, 300);
	it_close(fd);
	snprintf(needle, sizeof(needle), "client=%s ", want_client);
	it_acl_expect_log(&fx->d, needle, 3000);
}

static void
test_proxy_v1_header_names_the_client(void **state)
{
	char hdr[108];
	size_t n = it_acl_proxy_v1(hdr, "192.0.2.7", 5555, "127.0.0.1", pp_port);

	proxied_session(it_fx(state), hdr, n, false, "192.0.2.7:5555");
}

static void
test_proxy_v1_tcp6_header_sent_byte_by_byte_names_the_client(void **state)
{
	char hdr[108];
	size_t n = it_acl_proxy_v1(hdr, "2001:db8::7", 5556, "::1", pp_port);

	proxied_session(it_fx(state), hdr, n, true, "[2001:db8::7]:5556");
}

static void
test_proxy_v2_header_names_the_client(void **state)
{
	uint8_t hdr[64];
	size_t n = it_acl_proxy_v2(hdr, "192.0.2.8", 6666, "127.0.0.1", pp_port);

	proxied_session(it_fx(state), hdr, n, false, "192.0.2.8:6666");
}

static void
test_proxy_v2_ipv6_header_with_greeting_in_same_segment(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t msg[80], addr[32];
	const uint8_t chosen[] = { 0x05, 0x00 };
	size_t n = it_acl_proxy_v2(msg, "2001:db8::8", 7777, "::1", pp_port);
	struct it_reply r;
	char err[256];
	int fd;

	/* Header and greeting in one write: the greeting must not be lost
	 * with the header's bytes. */
	msg[n++] = 0x05;
	msg[n++] = 0x01;
	msg[n++] = 0x00;
	fd = it_acl_dial(NULL, pp_port, msg, n, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	it_expect_bytes(fd, chosen, sizeof(chosen));
	if (it_acl_request(fd, 0x01, addr, it_target_addr(&it_tg.echo4, addr), &r, err,
		    sizeof(err)) < 0)
		fail_msg("CONNECT: %s", err);
	assert_int_equal(r.rep, 0x00);
	it_expect_echo(fd, 4096, 301);
	it_close(fd);
	it_acl_expect_log(&fx->d, "client=[2001:db8::8]:7777 ", 3000);
}

/* Connects (from src) to the PROXY listener, sends p, expects a close with
 * no byte back. */
static void
expect_proxy_refused(const char *src, const void *p, size_t n, const char *what)
{
	char err[256];
	int fd = it_acl_dial(src, pp_port, NULL, 0, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s", err);
	(void)it_send_all(fd, p, n);
	it_acl_expect_shut(fd, 2000, what);
	it_close(fd);
}

static void
test_proxy_listener_closes_connection_without_header(void **state)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };

	it_fx(state);
	expect_proxy_refused(NULL, greet, sizeof(greet), "SOCKS greeting with no PROXY header");
}

static void
test_proxy_listener_closes_garbage_headers(void **state)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 127.0.0.1 5555\r\n",        /* a field short */
		"PROXY TCP4 192.0.2.777 127.0.0.1 5555 1080\r\n", /* bad address */
		"PROXY TCP9 192.0.2.7 127.0.0.1 5555 1080\r\n",   /* bad protocol */
		"GET / HTTP/1.0\r\n\r\n",                         /* not PROXY at all */
		"PROXY TCP4 192.0.2.7 127.0.0.1 5555 1080\n",     /* LF only */
	};
	uint8_t v2[64];
	size_t n;

	it_fx(state);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_proxy_refused(NULL, bad[i], strlen(bad[i]), bad[i]);
	/* v2 with version nibble 3 and with a length too short for TCP4. */
	n = it_acl_proxy_v2(v2, "192.0.2.7", 5555, "127.0.0.1", pp_port);
	v2[12] = 0x31;
	expect_proxy_refused(NULL, v2, n, "PROXY v2 header of version 3");
	n = it_acl_proxy_v2(v2, "192.0.2.7", 5555, "127.0.0.1", pp_port);
	v2[15] = 4;
	expect_proxy_refused(NULL, v2, n, "PROXY v2 TCP4 header with length 4");
}

static void
test_proxy_header_from_untrusted_source_is_closed(void **state)
{
	char hdr[108];
	size_t n = it_acl_proxy_v1(hdr, "192.0.2.7", 5555, "127.0.0.1", pp_port);

	it_fx(state);
	/* proxy-protocol-from 127.0.0.1/32: 127.0.0.2 may not claim anyone. */
	expect_proxy_refused("127.0.0.2", hdr, n, "valid PROXY header from 127.0.0.2");
}

static void
test_client_rule_applies_to_proxied_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char hdr[108], needle[512];
	size_t n = it_acl_proxy_v1(hdr, "192.0.2.66", 5555, "127.0.0.1", pp_port);

	expect_proxy_refused(NULL, hdr, n, "PROXY client 192.0.2.66 (client deny 192.0.2.66)");
	snprintf(needle, sizeof(needle), "client 192.0.2.66:5555 denied by %s:%d", fx->d.conf,
		it_acl_conf_line(&fx->d, 3));
	it_acl_expect_log(&fx->d, needle, 2000);
}

static int
setup_proxy(void **state)
{
	char conf[512];

	pp_port = it_acl_free_port();
	if (pp_port == 0)
		return -1;
	/* "rule allow to 127.0.0.0/8": proxied clients are not on loopback,
	 * and the targets are. */
	snprintf(conf, sizeof(conf),
		"listen 127.0.0.1:%u proxy-protocol\n" /* 1 */
		"proxy-protocol-from 127.0.0.1/32\n"   /* 2 */
		"client deny 192.0.2.66\n"             /* 3 */
		"client allow all\n"                   /* 4 */
		"rule allow to 127.0.0.0/8\n"          /* 5 */
		"log-level info\n",
		pp_port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

/* ======================================================================
 * HAProxy in front of two daemons
 * ====================================================================== */

static struct {
	bool have;   /* haproxy installed and running */
	bool broken; /* installed, but it did not start */
	char path[256];
	char dir[64]; /* its config and log */
	char conf[128], log[128];
	pid_t pid;
	uint16_t port;  /* its frontend */
	uint16_t pp[2]; /* the daemons' PROXY listeners */
	struct it_daemon second;
	bool second_started;
} hap;

static void
need_haproxy(void)
{
	if (hap.broken)
		fail_msg("haproxy is installed but did not start (its log is above)");
	if (!hap.have) {
		print_message("[   INFO   ] SKIP: haproxy is not installed (Debian package "
			      "haproxy)\n");
		skip();
	}
}

/* The log (of either daemon) line that names needle; which daemon. */
static int
daemon_logging(const struct it_fixture *fx, const char *needle, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		if (it_acl_log_count(&fx->d, needle) > 0)
			return 0;
		if (it_acl_log_count(&hap.second, needle) > 0)
			return 1;
		if (it_now_ms() >= deadline)
			return -1;
		it_sleep_ms(20);
	}
}

static void
test_haproxy_send_proxy_v2_passes_real_client_to_both_daemons(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .src = "127.0.0.6", .port = hap.port };
	int served[2] = { 0, 0 };

	need_haproxy();
	/* Round robin: four sessions, two each. */
	for (int i = 0; i < 4; i++) {
		char needle[64];
		int fd = it_acl_open(&c, &it_tg.echo4);
		uint16_t lport = it_local_port(fd);

		it_expect_echo(fd, 4096, 400 + (uint64_t)i);
		it_close(fd);
		/* The client's own source port, not HAProxy's outgoing one. */
		snprintf(needle, sizeof(needle), "client=127.0.0.6:%u ", lport);
		int which = daemon_logging(fx, needle, 3000);
		if (which < 0)
			fail_msg("no daemon logged a session with %s", needle);
		served[which]++;
	}
	print_message("[   INFO   ] sessions per daemon: %d, %d\n", served[0], served[1]);
	if (served[0] == 0 || served[1] == 0)
		fail_msg("HAProxy's two servers: %d and %d sessions, want both used", served[0],
			served[1]);
}

static void
test_haproxy_client_denied_by_real_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client ok = { .src = "127.0.0.6", .port = hap.port };
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	char err[256], needle[64];
	int fd;

	need_haproxy();
	fd = it_acl_dial("127.0.0.5", hap.port, NULL, 0, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	snprintf(needle, sizeof(needle), "client 127.0.0.5:%u denied by", it_local_port(fd));
	(void)it_send_all(fd, greet, sizeof(greet));
	it_acl_expect_shut(fd, 3000, "127.0.0.5 through HAProxy (client deny 127.0.0.5)");
	it_close(fd);
	if (daemon_logging(fx, needle, 2000) < 0)
		fail_msg("no daemon logged \"%s\"", needle);
	fd = it_acl_open(&ok, &it_tg.echo4);
	it_expect_echo(fd, 4096, 410);
	it_close(fd);
}

static void
test_curl_through_haproxy_fetches_intact(void **state)
{
	char path[256], proxy[32], url[96];
	char *argv[] = { path, "-sS", "--fail", "--max-time", "10", "--noproxy", "", "--socks5",
		proxy, url, NULL };
	struct it_hash hs;

	it_fx(state);
	need_haproxy();
	if (!it_find_program("curl", path, sizeof(path))) {
		print_message("[   INFO   ] SKIP: curl is not installed\n");
		skip();
	}
	snprintf(proxy, sizeof(proxy), "127.0.0.1:%u", hap.port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/blob", it_tg.http4.port);
	int st = it_run_program(argv, 15000, &hs);
	if (st != 0)
		fail_msg("curl --socks5 %s %s: exit status %d", proxy, url, st);
	assert_int_equal(hs.n, IT_HTTP_BYTES);
	if (hs.h != it_stream_hash(IT_HTTP_SEED, IT_HTTP_BYTES))
		fail_msg("curl through HAProxy: the body came back altered");
}

static const char *
haproxy_find(char *path, size_t cap)
{
	if (access("/usr/sbin/haproxy", X_OK) == 0) {
		snprintf(path, cap, "/usr/sbin/haproxy");
		return path;
	}
	return it_find_program("haproxy", path, cap) ? path : NULL;
}

static int
haproxy_start(void)
{
	FILE *f;
	uint64_t deadline;
	char *argv[] = { hap.path, "-f", hap.conf, "-db", NULL };

	snprintf(hap.dir, sizeof(hap.dir), "/tmp/socks5d-it-haproxy.XXXXXX");
	if (mkdtemp(hap.dir) == NULL)
		return -1;
	snprintf(hap.conf, sizeof(hap.conf), "%s/haproxy.cfg", hap.dir);
	snprintf(hap.log, sizeof(hap.log), "%s/haproxy.log", hap.dir);
	if ((hap.port = it_acl_free_port()) == 0 || (f = fopen(hap.conf, "w")) == NULL)
		return -1;
	fprintf(f,
		"global\n"
		"\tmaxconn 100\n"
		"defaults\n"
		"\tmode tcp\n"
		"\ttimeout connect 2s\n"
		"\ttimeout client 20s\n"
		"\ttimeout server 20s\n"
		"frontend socks\n"
		"\tbind 127.0.0.1:%u\n"
		"\tdefault_backend socks5d\n"
		"backend socks5d\n"
		"\tbalance roundrobin\n"
		"\tserver a 127.0.0.1:%u send-proxy-v2\n"
		"\tserver b 127.0.0.1:%u send-proxy-v2\n",
		hap.port, hap.pp[0], hap.pp[1]);
	if (fclose(f) != 0)
		return -1;
	hap.pid = it_scale_spawn(argv, hap.log);
	if (hap.pid < 0)
		return -1;
	deadline = it_now_ms() + 5000;
	while (it_now_ms() < deadline) {
		int status;
		if (waitpid(hap.pid, &status, WNOHANG) == hap.pid) {
			hap.pid = 0;
			break;
		}
		int fd = it_connect_addr("127.0.0.1", hap.port, NULL);
		if (fd >= 0) {
			it_close(fd);
			return 0;
		}
		it_sleep_ms(20);
	}
	fprintf(stderr, "haproxy did not start; its log %s:\n", hap.log);
	if ((f = fopen(hap.log, "r")) != NULL) {
		char line[512];
		while (fgets(line, sizeof(line), f) != NULL)
			fputs(line, stderr);
		fclose(f);
	}
	return -1;
}

/* A daemon behind HAProxy: PROXY listener on port, 127.0.0.5 denied. */
static void
backend_conf(char *conf, size_t cap, uint16_t port)
{
	snprintf(conf, cap,
		"listen 127.0.0.1:%u proxy-protocol\n"
		"proxy-protocol-from 127.0.0.1\n"
		"client deny 127.0.0.5\n"
		"client allow all\n"
		"log-level info\n",
		port);
}

static int
setup_haproxy(void **state)
{
	char conf[512];

	memset(&hap, 0, sizeof(hap));
	if (!it_server_has(SOCKS5D_ONLY))
		return it_fixture_start_for(state, SOCKS5D_ONLY, "", NULL, NULL);
	hap.pp[0] = it_acl_free_port();
	hap.pp[1] = it_acl_free_port();
	backend_conf(conf, sizeof(conf), hap.pp[1]);
	if (it_daemon_start(&hap.second, conf) != 0)
		return -1;
	hap.second_started = true;
	backend_conf(conf, sizeof(conf), hap.pp[0]);
	if (it_fixture_start(state, conf, NULL, NULL) != 0) {
		(void)it_daemon_stop(&hap.second);
		hap.second_started = false;
		return -1;
	}
	if (haproxy_find(hap.path, sizeof(hap.path)) == NULL)
		return 0;
	/* A failure to start is reported by each test; the daemons are
	 * stopped by the teardown, which a failed setup would skip. */
	if (haproxy_start() < 0)
		hap.broken = true;
	else
		hap.have = true;
	return 0;
}

static int
teardown_haproxy(void **state)
{
	it_scale_stop(&hap.pid);
	if (hap.dir[0] != '\0') {
		unlink(hap.conf);
		unlink(hap.log);
		rmdir(hap.dir);
	}
	if (hap.second_started && it_daemon_stop(&hap.second) < 0) {
		fprintf(stderr, "[  ERROR   ] second daemon did not exit cleanly on SIGTERM\n");
		it_harness_failures++;
	}
	return it_fixture_stop(state);
}

/* ======================================================================
 * metrics
 * ====================================================================== */

static uint16_t metrics_port;
static struct it_target updown;

struct counters {
	unsigned long long ok, refused, up, down, auth_fail, accepted, active_none, active_connect;
};

static bool
scrape(struct counters *c)
{
	char *body = NULL;
	int st = it_scale_http(metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body,
		3000);
	bool ok = st == 200;

	memset(c, 0, sizeof(*c));
	/* A sessions_total sample appears once it is non-zero. */
	(void)it_scale_metric(body, "socks5d_sessions_total{cmd=\"connect\",rep=\"0x00\"}", &c->ok);
	(void)it_scale_metric(body, "socks5d_sessions_total{cmd=\"connect\",rep=\"0x05\"}",
		&c->refused);
	ok = ok && it_scale_metric(body, "socks5d_bytes_total{direction=\"up\"}", &c->up);
	ok = ok && it_scale_metric(body, "socks5d_bytes_total{direction=\"down\"}", &c->down);
	ok = ok && it_scale_metric(body, "socks5d_auth_failures_total", &c->auth_fail);
	ok = ok && it_scale_metric(body, "socks5d_connections_accepted_total", &c->accepted);
	ok = ok && it_scale_metric(body, "socks5d_sessions_active{cmd=\"none\"}", &c->active_none);
	ok = ok &&
		it_scale_metric(body, "socks5d_sessions_active{cmd=\"connect\"}",
			&c->active_connect);
	if (!ok)
		print_error("scrape of 127.0.0.1:%u: status %d, body:\n%s\n", metrics_port, st,
			body ? body : "(none)");
	free(body);
	return ok;
}

/* Scrapes until no session is open (bounded). */
static void
scrape_idle(struct counters *c)
{
	uint64_t deadline = it_now_ms() + 3000;

	for (;;) {
		if (!scrape(c))
			fail_msg("metrics scrape failed");
		if (c->active_none == 0 && c->active_connect == 0)
			return;
		if (it_now_ms() >= deadline)
			fail_msg("sessions still active 3 s after the test closed them");
		it_sleep_ms(20);
	}
}

static void
test_metrics_count_exactly_the_traffic_made(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client alice = { .port = fx->d.port,
		.user = "alice",
		.pass = "wonderland" };
	const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
	const uint8_t wrong[] = { 0x01, 5, 'a', 'l', 'i', 'c', 'e', 5, 'w', 'r', 'o', 'n', 'g' };
	uint8_t up[IT_SCALE_UP], down[IT_SCALE_DOWN], addr[32], st_auth[2];
	struct counters a, b;
	uint64_t st = 500, deadline;
	char err[256];
	int fd;

	scrape_idle(&a);
	it_fill(up, sizeof(up), &st);
	/* Three sessions of exactly 1000 bytes up and 2000 down. */
	for (int i = 0; i < 3; i++) {
		struct it_hash hs;

		fd = it_acl_open(&alice, &updown);
		it_send_bytes(fd, up, sizeof(up));
		if (it_recv_exact(fd, down, sizeof(down), IT_IO_TIMEOUT_MS) != sizeof(down))
			fail_msg("session %d: the target's %d bytes did not all arrive", i,
				IT_SCALE_DOWN);
		it_hash_init(&hs);
		it_hash_update(&hs, down, sizeof(down));
		assert_true(hs.h == it_stream_hash(IT_SCALE_DOWN_SEED, IT_SCALE_DOWN));
		/* The target closed after answering: its FIN is relayed. */
		it_expect_close(fd, 2000);
		it_close(fd);
	}
	/* One CONNECT the target host refuses (REP 05). */
	fd = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
	if (fd < 0 || it_acl_auth(fd, "alice", "wonderland", err, sizeof(err)) < 0)
		fail_msg("%s", err);
	{
		uint8_t msg[16] = { 0x05, 0x01, 0x00 };
		size_t n = it_acl_addr4(addr, "127.0.0.1", it_tg.closed_port4);
		memcpy(msg + 3, addr, n);
		it_send_bytes(fd, msg, 3 + n);
		it_acl_expect_refusal(fd, 0x05);
	}
	it_close(fd);
	/* One authentication failure. */
	fd = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_bytes(fd, wrong, sizeof(wrong));
	assert_int_equal(it_recv_exact(fd, st_auth, 2, 3000), 2);
	assert_int_equal(st_auth[0], 0x01);
	assert_int_not_equal(st_auth[1], 0x00);
	it_close(fd);
	/* Sessions are counted when they end: wait for all five to end. */
	deadline = it_now_ms() + 3000;
	for (;;) {
		if (!scrape(&b))
			fail_msg("metrics scrape failed");
		if ((b.ok - a.ok >= 3 && b.refused - a.refused >= 1 &&
			    b.auth_fail - a.auth_fail >= 1 && b.active_none == 0 &&
			    b.active_connect == 0) ||
			it_now_ms() >= deadline)
			break;
		it_sleep_ms(20);
	}
	print_message("[   INFO   ] deltas: connect/0x00 %llu, connect/0x05 %llu, up %llu, "
		      "down %llu, auth failures %llu, accepted %llu\n",
		b.ok - a.ok, b.refused - a.refused, b.up - a.up, b.down - a.down,
		b.auth_fail - a.auth_fail, b.accepted - a.accepted);
	assert_int_equal(b.ok - a.ok, 3);
	assert_int_equal(b.refused - a.refused, 1);
	assert_int_equal(b.up - a.up, 3 * IT_SCALE_UP);
	assert_int_equal(b.down - a.down, 3 * IT_SCALE_DOWN);
	assert_int_equal(b.auth_fail - a.auth_fail, 1);
	assert_int_equal(b.accepted - a.accepted, 5);
}

static void
test_metrics_malformed_request_gets_400_and_endpoint_stays_healthy(void **state)
{
	static const char *const bad[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
		"GET /metrics HTTP/1.1\n\n",                    /* bare LF */
		"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
		"G\x01T /metrics HTTP/1.1\r\n\r\n",
	};
	struct counters c;
	char *resp = NULL;

	it_fx(state);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = it_scale_http(metrics_port, bad[i], &resp, 3000);
		print_message("[   INFO   ] malformed request %zu: status %d\n", i, st);
		/* 400, or closed without an answer: never a 200 nor a hang. */
		if (st != 400 && st != 0)
			fail_msg("malformed request %zu: status %d, want 400 (or a close); "
				 "answer:\n%s",
				i, st, resp ? resp : "");
		free(resp);
		resp = NULL;
	}
	if (!scrape(&c))
		fail_msg("GET /metrics after malformed requests failed");
}

static void
test_metrics_other_path_gets_404(void **state)
{
	char *resp = NULL;
	int st;

	it_fx(state);
	st = it_scale_http(metrics_port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n", &resp, 3000);
	if (st != 404)
		fail_msg("GET /other: status %d, want 404; answer:\n%s", st, resp ? resp : "");
	free(resp);
	/* A prefix of /metrics is another path too. */
	st = it_scale_http(metrics_port, "GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 3000);
	assert_int_equal(st, 404);
}

static int
setup_metrics(void **state)
{
	char conf[256];

	if ((metrics_port = it_acl_free_port()) == 0 || it_scale_updown_start(&updown) < 0)
		return -1;
	snprintf(conf, sizeof(conf),
		"auth password\nuser alice wonderland\nmetrics 127.0.0.1:%u\nlog-level info\n",
		metrics_port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, "alice", "wonderland");
}

static int
teardown_metrics(void **state)
{
	it_scale_updown_stop(&updown);
	return it_fixture_stop(state);
}

/* ====================================================================== */

int
it_run_scale_tests(void)
{
	const struct CMUnitTest fd_tests[] = {
		IT_TEST(test_fd_exhaustion_sheds_new_clients_without_spinning_and_recovers),
	};
	const struct CMUnitTest worker_tests[] = {
		IT_TEST(test_workers_share_500_sessions),
		IT_TEST(test_each_worker_serves_its_own_metrics_on_port_plus_index),
		IT_TEST(test_killed_worker_is_restarted_while_sessions_go_on),
		IT_TEST(test_sighup_to_supervisor_reaches_both_workers),
	};
	const struct CMUnitTest proxy_tests[] = {
		IT_TEST(test_proxy_v1_header_names_the_client),
		IT_TEST(test_proxy_v1_tcp6_header_sent_byte_by_byte_names_the_client),
		IT_TEST(test_proxy_v2_header_names_the_client),
		IT_TEST(test_proxy_v2_ipv6_header_with_greeting_in_same_segment),
		IT_TEST(test_proxy_listener_closes_connection_without_header),
		IT_TEST(test_proxy_listener_closes_garbage_headers),
		IT_TEST(test_proxy_header_from_untrusted_source_is_closed),
		IT_TEST(test_client_rule_applies_to_proxied_address),
	};
	const struct CMUnitTest haproxy_tests[] = {
		IT_TEST(test_haproxy_send_proxy_v2_passes_real_client_to_both_daemons),
		IT_TEST(test_haproxy_client_denied_by_real_address),
		IT_TEST(test_curl_through_haproxy_fetches_intact),
	};
	const struct CMUnitTest metrics_tests[] = {
		IT_TEST(test_metrics_count_exactly_the_traffic_made),
		IT_TEST(test_metrics_malformed_request_gets_400_and_endpoint_stays_healthy),
		IT_TEST(test_metrics_other_path_gets_404),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("scale: descriptor exhaustion", fd_tests, setup_fd,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("scale: workers 2", worker_tests, setup_workers,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("scale: PROXY protocol listener", proxy_tests,
		setup_proxy, it_fixture_stop);
	failed += cmocka_run_group_tests_name("scale: HAProxy send-proxy-v2", haproxy_tests,
		setup_haproxy, teardown_haproxy);
	failed += cmocka_run_group_tests_name("scale: metrics", metrics_tests, setup_metrics,
		teardown_metrics);
	return failed;
}
