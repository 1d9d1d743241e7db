/*
 * test_conn: the session state machine (conn) on a socketpair, inside the
 * real event loop, with a real resolver (a hosts file, a dead nameserver)
 * and real targets on loopback. One test per transition the state table
 * allows: each drives a connection along one path and asserts the exact
 * sequence of states it went through (so no other transition happened),
 * and the reply bytes the client saw where they tell the path apart. The
 * last tests check the table itself and that ARCHITECTURE.md's state
 * diagram lists exactly the table's transitions (issue 16).
 */
#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "connlimit.h"
#include "log.h"
#include "loop.h"
#include "pwcheck.h"
#include "resolver.h"
#include "unit_util.h"

#define MAX_TRACE 32
#define GUARD_MS 3000

struct fx {
	struct loop *loop;
	struct conn_env env;
	struct config *cfg;
	struct resolver *resolver;
	struct connlimit *limits;
	struct pwcheck *pwcheck; /* the password helpers, when the config has users */
	int client;              /* the test's end of the client connection */
	int target_lfd;          /* a listening target on 127.0.0.1 */
	uint16_t target_port;
	uint16_t closed_port; /* a loopback port nothing listens on */
	int closed_fd;        /* holds closed_port: bound, never listening */
	char hosts[64];       /* the resolver's hosts file */
	size_t ntrace;
	size_t trace[MAX_TRACE][2]; /* (from, to) of every state change */
};

static void
on_trace(uint64_t id, size_t from, size_t to, void *arg)
{
	struct fx *f = arg;

	if (f->ntrace < MAX_TRACE) {
		f->trace[f->ntrace][0] = from;
		f->trace[f->ntrace][1] = to;
		f->ntrace++;
	}
}

static size_t
state_by_name(const char *name)
{
	for (size_t i = 0; i < conn_state_count(); i++)
		if (strcmp(conn_state_name(i), name) == 0)
			return i;
	fail_msg("no state named %s", name);
	return 0;
}

/* The state the connection is in now (the last one the trace saw). */
static const char *
current(const struct fx *f)
{
	return f->ntrace ? conn_state_name(f->trace[f->ntrace - 1][1]) : "new";
}

struct state_wait {
	const struct fx *f;
	const char *name;
};

static bool
pred_in_state(void *arg)
{
	const struct state_wait *w = arg;

	return strcmp(current(w->f), w->name) == 0;
}

/* Runs the loop until the connection is in state `name` (guarded in time). */
static void
run_until_state(struct fx *f, const char *name)
{
	struct state_wait w = { f, name };

	(void)unit_run_until(f->loop, pred_in_state, &w, GUARD_MS);
	assert_string_equal(current(f), name);
}

/* The whole path so far: "new", then each state entered, in order. */
static void
assert_path(const struct fx *f, const char *const *names, size_t n)
{
	assert_int_equal(f->ntrace + 1, n);
	assert_string_equal(names[0], "new");
	for (size_t i = 0; i < f->ntrace; i++) {
		assert_string_equal(conn_state_name(f->trace[i][0]), names[i]);
		assert_string_equal(conn_state_name(f->trace[i][1]), names[i + 1]);
		assert_true(conn_state_may_follow(f->trace[i][0], f->trace[i][1]));
	}
}
#define ASSERT_PATH(f, ...)                                             \
	do {                                                            \
		static const char *const p_[] = { "new", __VA_ARGS__ }; \
		assert_path(f, p_, sizeof(p_) / sizeof(p_[0]));         \
	} while (0)

static void
client_send(struct fx *f, const void *p, size_t n)
{
	assert_int_equal(write(f->client, p, n), (ssize_t)n);
}

struct client_read {
	struct fx *f;
	uint8_t *buf;
	size_t want, have;
};

static bool
pred_read_all(void *arg)
{
	struct client_read *r = arg;
	ssize_t n = read(r->f->client, r->buf + r->have, r->want - r->have);

	if (n > 0)
		r->have += (size_t)n;
	return r->have == r->want;
}

/* Reads exactly n bytes the daemon sent (running the loop meanwhile). */
static void
client_read(struct fx *f, uint8_t *buf, size_t n)
{
	struct client_read r = { f, buf, n, 0 };

	(void)unit_run_until(f->loop, pred_read_all, &r, GUARD_MS);
	assert_int_equal(r.have, n);
}

static void
client_expect(struct fx *f, const uint8_t *want, size_t n)
{
	uint8_t got[64];

	assert_true(n <= sizeof(got));
	client_read(f, got, n);
	assert_memory_equal(got, want, n);
}

static uint16_t
bound_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

static int
tcp_bound(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static int
tcp_listener(void)
{
	int fd = tcp_bound();

	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

/* extra with the fixture's addresses put in: PARENT is the target listener
 * (which the parent tests play a parent on), DEAD a port nothing listens
 * on, PNAME the listener by a name of the hosts file. */
static void
fx_expand(const struct fx *f, const char *extra, char *out, size_t cap)
{
	static const char *const tokens[] = { "PARENT", "DEAD", "PNAME" };
	size_t n = 0;

	while (*extra && n + 32 < cap) {
		size_t t;

		for (t = 0; t < 3 && strncmp(extra, tokens[t], strlen(tokens[t])) != 0; t++)
			;
		if (t == 3) {
			out[n++] = *extra++;
			continue;
		}
		n += (size_t)snprintf(out + n, cap - n, "%s:%u",
			t == 2 ? "parent.test" : "127.0.0.1",
			(unsigned)(t == 1 ? f->closed_port : f->target_port));
		extra += strlen(tokens[t]);
	}
	out[n] = '\0';
}

/* Starts the daemon's side: config text (the common part is added), then
 * one accepted connection, with or without a PROXY header expected. */
static void
fx_start(struct fx *f, const char *extra_in, bool proxy_protocol)
{
	char text[2048], err[256], extra[1024];
	struct resolver_options ro;
	struct connlimit_config lc;
	union sockaddr_any ns, peer, local;
	int sv[2], closed;
	FILE *h;

	snprintf(f->hosts, sizeof(f->hosts), "/tmp/test_conn_hosts.XXXXXX");
	closed = mkstemp(f->hosts);
	assert_true(closed >= 0);
	h = fdopen(closed, "w");
	assert_non_null(h);
	fprintf(h, "127.0.0.1 target.test\n127.0.0.1 parent.test\n");
	fclose(h);
	/* Bound but not listening: connects are refused, and no other
	 * process (tests run beside each other) can take the port meanwhile. */
	f->closed_fd = tcp_bound();
	f->closed_port = bound_port(f->closed_fd);
	f->target_lfd = tcp_listener();
	f->target_port = bound_port(f->target_lfd);
	fx_expand(f, extra_in, extra, sizeof(extra));
	snprintf(text, sizeof(text),
		"listen 127.0.0.1:1080\nnameserver 127.0.0.1:%u\nproxy-protocol-from 127.0.0.1\n"
		"timeout bind 1\nauth-fail-limit 0\nlog-level error\n%s",
		f->closed_port, extra);
	if (config_parse_string(text, "test.conf", &f->cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	f->loop = loop_new();
	assert_non_null(f->loop);
	memset(&ro, 0, sizeof(ro));
	assert_int_equal(addr_parse("127.0.0.1", f->closed_port, &ns), 0);
	ro.nameservers = &ns;
	ro.nnameservers = 1;
	ro.prefer_family = AF_INET;
	ro.hosts_path = f->hosts;
	f->resolver = resolver_new(f->loop, &ro);
	memset(&lc, 0, sizeof(lc));
	f->limits = connlimit_new(&lc);
	assert_non_null(f->resolver);
	assert_non_null(f->limits);
	conn_env_init(&f->env, f->loop, f->cfg, f->resolver, f->limits);
	if (auth_table_count(f->cfg->users) > 0) {
		struct pwcheck_options po = { .helper = { "test.conf", true, 1 },
			.ipv6_prefix = 64 };
		f->pwcheck = pwcheck_start(f->loop, f->cfg->users, &po);
		assert_non_null(f->pwcheck);
		f->env.pwcheck = f->pwcheck;
	}
	conn_set_trace(on_trace, f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	f->client = sv[1];
	assert_int_equal(addr_parse("127.0.0.1", 40000, &peer), 0);
	assert_int_equal(addr_parse("127.0.0.1", 1080, &local), 0);
	conn_accept(&f->env, sv[0], &peer, &local, proxy_protocol);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	log_init(LOG_LVL_ERROR);
	f->client = f->target_lfd = f->closed_fd = -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	conn_stop_all(&f->env);
	conn_set_trace(NULL, NULL);
	pwcheck_stop(f->pwcheck);
	conn_env_free(&f->env);
	if (f->loop) {
		(void)loop_run_once(f->loop, 0);
		resolver_free(f->resolver);
		loop_free(f->loop);
		connlimit_free(f->limits);
		config_unref(f->cfg);
		unlink(f->hosts);
	}
	if (f->client >= 0)
		close(f->client);
	if (f->target_lfd >= 0)
		close(f->target_lfd);
	if (f->closed_fd >= 0)
		close(f->closed_fd);
	free(f);
	return 0;
}

static const uint8_t greet_none[] = { 0x05, 0x01, 0x00 };
static const uint8_t method_none[] = { 0x05, 0x00 };
static const uint8_t greet_pass[] = { 0x05, 0x01, 0x02 };
static const uint8_t method_pass[] = { 0x05, 0x02 };

/* A SOCKS5 request to 127.0.0.1 (or 127.0.0.2 with second) at port. */
static void
send_request(struct fx *f, uint8_t cmd, uint16_t port, bool second)
{
	uint8_t r[] = { 0x05, cmd, 0x00, 0x01, 127, 0, 0, second ? 2 : 1, (uint8_t)(port >> 8),
		(uint8_t)port };

	client_send(f, r, sizeof(r));
}

static void
send_domain_request(struct fx *f, const char *name, uint16_t port)
{
	uint8_t r[300];
	size_t n = strlen(name);

	r[0] = 0x05;
	r[1] = 0x01;
	r[2] = 0x00;
	r[3] = 0x03;
	r[4] = (uint8_t)n;
	memcpy(r + 5, name, n);
	r[5 + n] = (uint8_t)(port >> 8);
	r[6 + n] = (uint8_t)port;
	client_send(f, r, n + 7);
}

/* A SOCKS4 CONNECT (or 4a with name) to 127.0.0.1:port. */
static void
send_socks4(struct fx *f, uint8_t cmd, uint16_t port, const char *name)
{
	uint8_t r[300] = { 0x04, cmd, (uint8_t)(port >> 8), (uint8_t)port, 127, 0, 0, 1, 'u', 0 };
	size_t n = 10;

	if (name) {
		r[4] = r[5] = r[6] = 0;
		r[7] = 1;
		memcpy(r + n, name, strlen(name) + 1);
		n += strlen(name) + 1;
	}
	client_send(f, r, n);
}

static void
greet_no_auth(struct fx *f)
{
	client_send(f, greet_none, sizeof(greet_none));
	client_expect(f, method_none, sizeof(method_none));
}

/* Expects a SOCKS5 reply with rep and skips its IPv4 BND. */
static void
expect_rep(struct fx *f, uint8_t rep)
{
	uint8_t r[10];

	client_read(f, r, sizeof(r));
	assert_int_equal(r[0], 0x05);
	assert_int_equal(r[1], rep);
	assert_int_equal(r[3], 0x01);
}

static void
client_closes(struct fx *f)
{
	close(f->client);
	f->client = -1;
}

/* --- from new, proxy, greeting -------------------------------------------- */

static void
test_new_to_greeting(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	ASSERT_PATH(f, "greeting");
}

static void
test_new_to_proxy_to_greeting(void **state)
{
	static const char hdr[] = "PROXY TCP4 192.0.2.7 127.0.0.1 5000 1080\r\n";
	struct fx *f = *state;

	fx_start(f, "", true);
	ASSERT_PATH(f, "proxy");
	client_send(f, hdr, strlen(hdr));
	run_until_state(f, "greeting");
	ASSERT_PATH(f, "proxy", "greeting");
}

static void
test_proxy_to_stopped_on_garbage(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", true);
	client_send(f, "GET / HTTP/1.0\r\n\r\n", 18);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "proxy", "stopped");
}

static void
test_greeting_to_request(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	ASSERT_PATH(f, "greeting", "request");
}

static void
test_greeting_to_auth(void **state)
{
	struct fx *f = *state;

	fx_start(f, "auth password\nuser alice wonderland\n", false);
	client_send(f, greet_pass, sizeof(greet_pass));
	client_expect(f, method_pass, sizeof(method_pass));
	ASSERT_PATH(f, "greeting", "auth");
}

static void
test_greeting_to_request4(void **state)
{
	struct fx *f = *state;

	fx_start(f, "socks4 on\n", false);
	client_send(f, "\x04", 1);
	run_until_state(f, "request4");
	ASSERT_PATH(f, "greeting", "request4");
}

static void
test_greeting_to_closing_without_acceptable_method(void **state)
{
	static const uint8_t no_method[] = { 0x05, 0xFF };
	struct fx *f = *state;

	fx_start(f, "auth password\nuser alice wonderland\n", false);
	client_send(f, greet_none, sizeof(greet_none));
	client_expect(f, no_method, sizeof(no_method));
	ASSERT_PATH(f, "greeting", "closing");
}

static void
test_greeting_to_stopped_on_bad_version(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	client_send(f, "\x06\x01\x00", 3);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "stopped");
}

/* --- auth ------------------------------------------------------------------ */

static void
send_userpass(struct fx *f, const char *user, const char *pass)
{
	uint8_t m[600];
	size_t ul = strlen(user), pl = strlen(pass);

	m[0] = 0x01;
	m[1] = (uint8_t)ul;
	memcpy(m + 2, user, ul);
	m[2 + ul] = (uint8_t)pl;
	memcpy(m + 3 + ul, pass, pl);
	client_send(f, m, ul + pl + 3);
}

static void
start_auth(struct fx *f)
{
	fx_start(f, "auth password\nuser alice wonderland\n", false);
	client_send(f, greet_pass, sizeof(greet_pass));
	client_expect(f, method_pass, sizeof(method_pass));
}

static void
test_auth_to_request(void **state)
{
	static const uint8_t ok[] = { 0x01, 0x00 };
	struct fx *f = *state;

	start_auth(f);
	send_userpass(f, "alice", "wonderland");
	client_expect(f, ok, sizeof(ok));
	ASSERT_PATH(f, "greeting", "auth", "auth-check", "request");
}

static void
test_auth_to_auth_delay_to_closing(void **state)
{
	static const uint8_t failed[] = { 0x01, 0x01 };
	struct fx *f = *state;

	start_auth(f);
	send_userpass(f, "alice", "wrong");
	run_until_state(f, "auth-delay");
	client_expect(f, failed, sizeof(failed));
	ASSERT_PATH(f, "greeting", "auth", "auth-check", "auth-delay", "closing");
}

static void
test_auth_delay_to_stopped(void **state)
{
	struct fx *f = *state;

	start_auth(f);
	send_userpass(f, "alice", "wrong");
	run_until_state(f, "auth-delay");
	conn_stop_all(&f->env);
	ASSERT_PATH(f, "greeting", "auth", "auth-check", "auth-delay", "stopped");
}

/* A locked-out address is not checked: auth -> auth-delay at once. */
static void
test_auth_to_auth_delay_when_locked_out(void **state)
{
	static const uint8_t failed[] = { 0x01, 0x01 };
	union sockaddr_any peer;
	uint64_t left;
	struct fx *f = *state;

	struct connlimit_auth_policy ap = { 1, 60000, 300000, 0 };

	fx_start(f, "auth password\nuser alice wonderland\n", false);
	connlimit_set_auth_policy(f->limits, &ap);
	assert_int_equal(addr_parse("127.0.0.1", 40000, &peer), 0);
	assert_int_equal(connlimit_auth_fail(f->limits, &peer, loop_now(f->loop)),
		CONNLIMIT_LOCKOUT_STARTED);
	assert_true(connlimit_auth_locked(f->limits, &peer, loop_now(f->loop), &left));
	client_send(f, greet_pass, sizeof(greet_pass));
	client_expect(f, method_pass, sizeof(method_pass));
	send_userpass(f, "alice", "wonderland");
	client_expect(f, failed, sizeof(failed));
	ASSERT_PATH(f, "greeting", "auth", "auth-delay", "closing");
}

/* The check of a yescrypt hash takes tens of milliseconds in a hasher:
 * the client's close is seen while it runs. */
static void
test_auth_check_to_stopped_when_client_closes(void **state)
{
	struct fx *f = *state;
	char conf[256], setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;

	memset(&cd, 0, sizeof(cd));
	assert_non_null(crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)));
	snprintf(conf, sizeof(conf), "auth password\nuser alice %s\n",
		crypt_r("wonderland", setting, &cd));
	fx_start(f, conf, false);
	client_send(f, greet_pass, sizeof(greet_pass));
	client_expect(f, method_pass, sizeof(method_pass));
	send_userpass(f, "alice", "wonderland");
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "auth", "auth-check", "stopped");
}

static void
test_auth_to_closing_on_bad_version(void **state)
{
	static const uint8_t bad[] = { 0x02, 0x01, 'a', 0x01, 'b' }, failed[] = { 0x01, 0x01 };
	struct fx *f = *state;

	start_auth(f);
	client_send(f, bad, sizeof(bad));
	client_expect(f, failed, sizeof(failed));
	ASSERT_PATH(f, "greeting", "auth", "closing");
}

static void
test_auth_to_stopped_when_client_closes(void **state)
{
	struct fx *f = *state;

	start_auth(f);
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "auth", "stopped");
}

/* --- request and request4 -------------------------------------------------- */

static void
test_request_to_connecting_to_relay(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->target_port, false);
	expect_rep(f, 0x00);
	ASSERT_PATH(f, "greeting", "request", "connecting", "relay");
}

static void
test_request_to_closing_when_denied(void **state)
{
	struct fx *f = *state;

	fx_start(f, "rule deny to 127.0.0.2\nrule allow all\n", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->target_port, true);
	expect_rep(f, 0x02);
	ASSERT_PATH(f, "greeting", "request", "closing");
}

static void
test_request_to_stopped_on_bad_version(void **state)
{
	static const uint8_t bad[] = { 0x04, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80 };
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	client_send(f, bad, sizeof(bad));
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request", "stopped");
}

static void
test_request_to_resolving_to_connecting(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_domain_request(f, "target.test", f->target_port);
	expect_rep(f, 0x00);
	ASSERT_PATH(f, "greeting", "request", "resolving", "connecting", "relay");
}

static void
test_request_to_bind_wait_to_relay(void **state)
{
	struct fx *f = *state;
	struct sockaddr_in to = { .sin_family = AF_INET };
	uint8_t first[10];
	int peer;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x02, 0, false);
	run_until_state(f, "bind-wait");
	client_read(f, first, sizeof(first));
	assert_int_equal(first[1], 0x00);
	memcpy(&to.sin_addr, first + 4, 4);
	memcpy(&to.sin_port, first + 8, 2);
	peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(peer, (struct sockaddr *)&to, sizeof(to)), 0);
	expect_rep(f, 0x00);
	close(peer);
	ASSERT_PATH(f, "greeting", "request", "bind-wait", "relay");
}

static void
test_bind_wait_to_closing_on_timeout(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x02, 0, false);
	expect_rep(f, 0x00);
	expect_rep(f, 0x04); /* timeout bind 1: host unreachable */
	ASSERT_PATH(f, "greeting", "request", "bind-wait", "closing");
}

static void
test_bind_wait_to_stopped_when_client_closes(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x02, 0, false);
	run_until_state(f, "bind-wait");
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request", "bind-wait", "stopped");
}

static void
test_request_to_udp_to_stopped(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x03, 0, false);
	expect_rep(f, 0x00);
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request", "udp", "stopped");
}

static void
test_request4_to_connecting(void **state)
{
	static const uint8_t granted[] = { 0x00, 90 };
	struct fx *f = *state;

	fx_start(f, "socks4 on\n", false);
	send_socks4(f, 0x01, f->target_port, NULL);
	client_expect(f, granted, sizeof(granted));
	ASSERT_PATH(f, "greeting", "request4", "connecting", "relay");
}

static void
test_request4_to_resolving(void **state)
{
	static const uint8_t granted[] = { 0x00, 90 };
	struct fx *f = *state;

	fx_start(f, "socks4 on\n", false);
	send_socks4(f, 0x01, f->target_port, "target.test");
	client_expect(f, granted, sizeof(granted));
	ASSERT_PATH(f, "greeting", "request4", "resolving", "connecting", "relay");
}

static void
test_request4_to_bind_wait(void **state)
{
	struct fx *f = *state;

	fx_start(f, "socks4 on\n", false);
	send_socks4(f, 0x02, 0, NULL);
	run_until_state(f, "bind-wait");
	ASSERT_PATH(f, "greeting", "request4", "bind-wait");
}

static void
test_request4_to_closing_when_denied(void **state)
{
	static const uint8_t rejected[] = { 0x00, 91 };
	struct fx *f = *state;

	fx_start(f, "socks4 on\nrule deny to 127.0.0.1\nrule allow all\n", false);
	send_socks4(f, 0x01, f->target_port, NULL);
	client_expect(f, rejected, sizeof(rejected));
	ASSERT_PATH(f, "greeting", "request4", "closing");
}

static void
test_request4_to_stopped_when_client_closes(void **state)
{
	struct fx *f = *state;

	fx_start(f, "socks4 on\n", false);
	client_send(f, "\x04\x01", 2);
	run_until_state(f, "request4");
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request4", "stopped");
}

/* --- resolving and connecting ---------------------------------------------- */

static void
test_resolving_to_closing_on_bad_name(void **state)
{
	char name[80];
	struct fx *f = *state;

	memset(name, 'a', 70); /* a label over 63 bytes: not a hostname */
	name[70] = '\0';
	fx_start(f, "", false);
	greet_no_auth(f);
	send_domain_request(f, name, 80);
	expect_rep(f, 0x04);
	ASSERT_PATH(f, "greeting", "request", "resolving", "closing");
}

static void
test_resolving_to_stopped(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_domain_request(f, "absent.test", 80); /* the nameserver never answers */
	run_until_state(f, "resolving");
	conn_stop_all(&f->env);
	ASSERT_PATH(f, "greeting", "request", "resolving", "stopped");
}

static void
test_connecting_to_closing_when_refused(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->closed_port, false);
	expect_rep(f, 0x05);
	ASSERT_PATH(f, "greeting", "request", "connecting", "closing");
}

static void
test_connecting_to_stopped(void **state)
{
	struct fx *f = *state;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->target_port, false);
	run_until_state(f, "connecting");
	conn_stop_all(&f->env);
	ASSERT_PATH(f, "greeting", "request", "connecting", "stopped");
}

/* --- relay and closing ----------------------------------------------------- */

static void
test_relay_to_stopped_when_both_sides_close(void **state)
{
	struct fx *f = *state;
	int target;

	fx_start(f, "", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->target_port, false);
	expect_rep(f, 0x00);
	for (int i = 0; i < 100 && (target = accept(f->target_lfd, NULL, NULL)) < 0; i++)
		assert_int_equal(loop_run_once(f->loop, 10), 0);
	assert_true(target >= 0);
	close(target);
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request", "connecting", "relay", "stopped");
}

static void
test_closing_to_stopped_when_client_closes(void **state)
{
	struct fx *f = *state;

	fx_start(f, "rule deny all\n", false);
	greet_no_auth(f);
	send_request(f, 0x01, f->target_port, false);
	expect_rep(f, 0x02);
	client_closes(f);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "request", "closing", "stopped");
}

static void
test_handshake_timeout_stops_in_greeting(void **state)
{
	struct fx *f = *state;

	fx_start(f, "timeout handshake 1\n", false);
	run_until_state(f, "stopped");
	ASSERT_PATH(f, "greeting", "stopped");
}

/* --- the table itself ------------------------------------------------------ */

static void
test_table_names_are_distinct_and_every_state_can_stop(void **state)
{
	size_t n = conn_state_count(), stopped = state_by_name("stopped");

	for (size_t i = 0; i < n; i++) {
		assert_non_null(conn_state_name(i));
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(conn_state_name(i), conn_state_name(j));
		if (i != stopped && i != state_by_name("new"))
			assert_true(conn_state_may_follow(i, stopped));
	}
	for (size_t i = 0; i < n; i++)
		assert_false(conn_state_may_follow(stopped, i));
}

/* ARCHITECTURE.md's diagram: the lines "from -> to, to, ..." between the
 * lines "```states" and "```" list exactly the table's transitions. */
static void
test_architecture_diagram_matches_the_table(void **state)
{
	FILE *fp = fopen("ARCHITECTURE.md", "r");
	bool seen[32][32] = { { false } }, in = false;
	char line[256];
	size_t n = conn_state_count();

	assert_non_null(fp);
	assert_true(n <= 32);
	while (fgets(line, sizeof(line), fp)) {
		char *arrow, *from, *to, *save = NULL;
		if (!in) {
			in = strncmp(line, "```states", 9) == 0;
			continue;
		}
		if (strncmp(line, "```", 3) == 0)
			break;
		arrow = strstr(line, "->");
		assert_non_null(arrow);
		*arrow = '\0';
		from = strtok_r(line, " \t", &save);
		assert_non_null(from);
		for (to = strtok_r(arrow + 2, ", \t\n", &save); to;
			to = strtok_r(NULL, ", \t\n", &save)) {
			size_t a = state_by_name(from), b = state_by_name(to);
			assert_true(conn_state_may_follow(a, b));
			seen[a][b] = true;
		}
	}
	fclose(fp);
	assert_true(in);
	for (size_t a = 0; a < n; a++)
		for (size_t b = 0; b < n; b++)
			if (conn_state_may_follow(a, b) && !seen[a][b])
				fail_msg("ARCHITECTURE.md lacks %s -> %s", conn_state_name(a),
					conn_state_name(b));
}

/* --- through a parent proxy (the target listener plays the parent) -------- */

struct fd_read {
	struct fx *f;
	int fd;
	uint8_t *buf;
	size_t want, have;
	bool eof;
};

static bool
pred_fd_read(void *arg)
{
	struct fd_read *r = arg;
	ssize_t n = recv(r->fd, r->buf + r->have, r->want - r->have, MSG_DONTWAIT);

	if (n > 0)
		r->have += (size_t)n;
	r->eof = n == 0;
	return r->have == r->want || r->eof;
}

/* The fake parent reads exactly want[0..n) from the daemon. */
static void
parent_expect(struct fx *f, int fd, const void *want, size_t n)
{
	uint8_t got[512];
	struct fd_read r = { f, fd, got, n, 0, false };

	assert_true(n <= sizeof(got));
	(void)unit_run_until(f->loop, pred_fd_read, &r, GUARD_MS);
	assert_int_equal(r.have, n);
	assert_memory_equal(got, want, n);
}

static int
parent_accept(struct fx *f)
{
	int fd = -1;

	for (int i = 0; i < 300 && (fd = accept4(f->target_lfd, NULL, NULL, SOCK_CLOEXEC)) < 0; i++)
		assert_int_equal(loop_run_once(f->loop, 10), 0);
	assert_true(fd >= 0);
	return fd;
}

static void
parent_send(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

struct saw_wait {
	const struct fx *f;
	size_t from, to;
};

static bool
pred_saw(void *arg)
{
	const struct saw_wait *w = arg;

	for (size_t i = 0; i < w->f->ntrace; i++)
		if (w->f->trace[i][0] == w->from && w->f->trace[i][1] == w->to)
			return true;
	return false;
}

/* Runs the loop until the connection went from `from` to `to`; every
 * change it made is one the table allows. */
static void
run_until_saw(struct fx *f, const char *from, const char *to)
{
	struct saw_wait w = { f, state_by_name(from), state_by_name(to) };

	if (!unit_run_until(f->loop, pred_saw, &w, GUARD_MS))
		fail_msg("no %s -> %s (now in %s)", from, to, current(f));
	for (size_t i = 0; i < f->ntrace; i++)
		assert_true(conn_state_may_follow(f->trace[i][0], f->trace[i][1]));
}

static const uint8_t p5_greet[] = { 0x05, 0x01, 0x00 };
static const uint8_t p5_greet_pw[] = { 0x05, 0x02, 0x00, 0x02 };
static const uint8_t p5_userpass[] = { 0x01, 0x01, 'u', 0x01, 'p' };

/* The request the daemon forwards for send_request(f, cmd, port, false). */
static void
parent_expect_request(struct fx *f, int fd, uint8_t cmd, uint16_t port)
{
	const uint8_t r[] = { 0x05, cmd, 0x00, 0x01, 127, 0, 0, 1, (uint8_t)(port >> 8),
		(uint8_t)port };

	parent_expect(f, fd, r, sizeof(r));
}

/* Brings a session whose first hop is a SOCKS5 parent (socks5://u:p@ for
 * parent-auth) into state `at`, playing the parent; returns its end. */
static int
parent_walk_to(struct fx *f, const char *at, uint8_t cmd, uint16_t port)
{
	bool pw = strcmp(at, "parent-auth") == 0;
	int fd;

	if (strcmp(at, "parent-connecting") == 0) {
		run_until_state(f, at);
		return -1;
	}
	fd = parent_accept(f);
	if (pw) {
		parent_expect(f, fd, p5_greet_pw, sizeof(p5_greet_pw));
		parent_send(fd, "\x05\x02", 2);
		parent_expect(f, fd, p5_userpass, sizeof(p5_userpass));
	} else {
		parent_expect(f, fd, p5_greet, sizeof(p5_greet));
	}
	if (strcmp(at, "parent-reply") == 0) {
		parent_send(fd, "\x05\x00", 2);
		parent_expect_request(f, fd, cmd, port);
	}
	run_until_state(f, at);
	return fd;
}

/*
 * The first hop fails in state `from` (a refused connect in
 * parent-connecting; elsewhere the parent closes while the session waits
 * for its message), and the session takes the next hop into `to`: another
 * parent by address (parent-connecting) or by name (resolving), `direct`
 * (connecting, or bind-wait for a BIND), none (closing: REP 01); `stopped`
 * is the session stopped while it waits in `from`.
 */
static void
failover_case(const char *from, const char *to)
{
	struct fx *f = NULL;
	bool stop = strcmp(to, "stopped") == 0, bind = strcmp(to, "bind-wait") == 0;
	const char *first = strcmp(from, "parent-auth") == 0      ? "socks5://u:p@PARENT"
		: strcmp(from, "parent-connecting") == 0 && !stop ? "socks5://DEAD"
								  : "socks5://PARENT";
	const char *next = strcmp(to, "parent-connecting") == 0 ? ",socks4://PARENT"
		: strcmp(to, "resolving") == 0                  ? ",socks5://PNAME"
		: strcmp(to, "connecting") == 0 || bind         ? ",direct"
								: "";
	uint8_t cmd = bind ? 0x02 : 0x01;
	uint16_t port;
	char conf[300];
	int fd;

	print_message("failover %s -> %s\n", from, to);
	setup((void **)&f);
	snprintf(conf, sizeof(conf), "timeout connect 5\nrule allow via %s%s\n", first, next);
	fx_start(f, conf, false);
	port = bind ? 0 : f->target_port;
	greet_no_auth(f);
	send_request(f, cmd, port, false);
	fd = parent_walk_to(f, from, cmd, port);
	if (stop) {
		conn_stop_all(&f->env);
	} else {
		if (fd >= 0)
			close(fd);
		run_until_saw(f, from, to);
		if (strcmp(to, "closing") == 0)
			expect_rep(f, 0x01);
	}
	if (stop)
		run_until_saw(f, from, to);
	if (fd >= 0 && stop)
		close(fd);
	teardown((void **)&f);
}

static void
test_parent_states_fail_over_every_way(void **state)
{
	static const char *const froms[] = { "parent-connecting", "parent-greeting", "parent-auth",
		"parent-reply" };
	static const char *const tos[] = { "parent-connecting", "resolving", "connecting",
		"bind-wait", "closing", "stopped" };

	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < 6; j++)
			failover_case(froms[i], tos[j]);
}

/* A password parent: the exact bytes it gets (the name unresolved), and
 * its BND in the client's reply. */
static void
test_request_to_parent_greeting_auth_reply_relay(void **state)
{
	static const uint8_t bnd_reply[] = { 0x05, 0x00, 0x00, 0x01, 192, 0, 2, 7, 0x30, 0x39 };
	static const uint8_t req[] = { 0x05, 0x01, 0x00, 0x03, 11, 'e', 'x', 'a', 'm', 'p', 'l',
		'e', '.', 'n', 'e', 't', 0x01, 0xbb };
	struct fx *f = *state;
	int fd;

	fx_start(f, "rule allow via socks5://u:p@PARENT\n", false);
	greet_no_auth(f);
	send_domain_request(f, "example.net", 443);
	fd = parent_accept(f);
	parent_expect(f, fd, p5_greet_pw, sizeof(p5_greet_pw));
	parent_send(fd, "\x05\x02", 2);
	parent_expect(f, fd, p5_userpass, sizeof(p5_userpass));
	parent_send(fd, "\x01\x00", 2);
	parent_expect(f, fd, req, sizeof(req));
	parent_send(fd, bnd_reply, sizeof(bnd_reply));
	client_expect(f, bnd_reply, sizeof(bnd_reply));
	close(fd);
	ASSERT_PATH(f, "greeting", "request", "parent-connecting", "parent-greeting", "parent-auth",
		"parent-reply", "relay");
}

/* A SOCKS4 client through an HTTP parent: the CONNECT it gets, 90 back. */
static void
test_request4_to_parent_connecting_to_parent_reply(void **state)
{
	static const uint8_t granted[] = { 0x00, 90 };
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	char want[128];
	struct fx *f = *state;
	int fd;

	fx_start(f, "socks4 on\nrule allow via http://PARENT\n", false);
	send_socks4(f, 0x01, 8080, NULL);
	fd = parent_accept(f);
	snprintf(want, sizeof(want),
		"CONNECT 127.0.0.1:8080 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
	parent_expect(f, fd, want, strlen(want));
	parent_send(fd, ok, strlen(ok));
	client_expect(f, granted, sizeof(granted));
	close(fd);
	ASSERT_PATH(f, "greeting", "request4", "parent-connecting", "parent-reply", "relay");
}

/* BIND through a parent: both of its replies reach the client as sent. */
static void
test_parent_reply_to_parent_bind_wait_to_relay(void **state)
{
	static const uint8_t first[] = { 0x05, 0x00, 0x00, 0x01, 198, 51, 100, 1, 0x1f, 0x90 };
	static const uint8_t second[] = { 0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x9c, 0x40 };
	struct fx *f = *state;
	int fd;

	fx_start(f, "rule allow via socks5://PARENT\n", false);
	greet_no_auth(f);
	send_request(f, 0x02, 0, false);
	fd = parent_walk_to(f, "parent-reply", 0x02, 0);
	parent_send(fd, first, sizeof(first));
	client_expect(f, first, sizeof(first));
	run_until_state(f, "parent-bind-wait");
	parent_send(fd, second, sizeof(second));
	client_expect(f, second, sizeof(second));
	close(fd);
	ASSERT_PATH(f, "greeting", "request", "parent-connecting", "parent-greeting",
		"parent-reply", "parent-bind-wait", "relay");
}

static void
test_parent_bind_wait_to_closing_on_timeout_and_stopped(void **state)
{
	static const uint8_t first[] = { 0x05, 0x00, 0x00, 0x01, 198, 51, 100, 1, 0x1f, 0x90 };
	struct fx *f = *state;
	int fd;

	for (int stop = 0; stop < 2; stop++) {
		if (stop) {
			teardown(state);
			setup(state);
			f = *state;
		}
		fx_start(f, "rule allow via socks5://PARENT\n", false);
		greet_no_auth(f);
		send_request(f, 0x02, 0, false);
		fd = parent_walk_to(f, "parent-reply", 0x02, 0);
		parent_send(fd, first, sizeof(first));
		client_expect(f, first, sizeof(first));
		run_until_state(f, "parent-bind-wait");
		if (stop) {
			conn_stop_all(&f->env);
			run_until_saw(f, "parent-bind-wait", "stopped");
		} else {
			expect_rep(f, 0x04); /* timeout bind 1 */
			run_until_saw(f, "parent-bind-wait", "closing");
		}
		close(fd);
	}
}

/* `resolve local`: the target's name is looked up here first, then the
 * parent's own name (resolving -> resolving), or the parent by address. */
static void
test_resolving_to_resolving_and_to_parent_connecting(void **state)
{
	static const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50 };
	struct fx *f = *state;
	int fd;

	for (int named = 0; named < 2; named++) {
		if (named) {
			teardown(state);
			setup(state);
			f = *state;
		}
		fx_start(f,
			named ? "rule allow via socks5://PNAME resolve local\n"
			      : "rule allow via socks5://PARENT resolve local\n",
			false);
		greet_no_auth(f);
		send_domain_request(f, "target.test", 80);
		fd = parent_accept(f);
		parent_expect(f, fd, p5_greet, sizeof(p5_greet));
		parent_send(fd, "\x05\x00", 2);
		parent_expect(f, fd, req, sizeof(req)); /* the address, not the name */
		close(fd);
		expect_rep(f, 0x01);
		if (named)
			ASSERT_PATH(f, "greeting", "request", "resolving", "resolving",
				"parent-connecting", "parent-greeting", "parent-reply", "closing");
		else
			ASSERT_PATH(f, "greeting", "request", "resolving", "parent-connecting",
				"parent-greeting", "parent-reply", "closing");
	}
}

/* `resolve local` with `direct` first: a BIND to a name goes straight from
 * the lookup to its listener. */
static void
test_resolving_to_bind_wait(void **state)
{
	uint8_t r[32] = { 0x05, 0x02, 0x00, 0x03, 11 };
	struct fx *f = *state;

	fx_start(f, "rule allow via direct,socks5://PARENT resolve local\n", false);
	greet_no_auth(f);
	memcpy(r + 5, "target.test", 11);
	client_send(f, r, 5 + 11 + 2);
	run_until_saw(f, "resolving", "bind-wait");
	ASSERT_PATH(f, "greeting", "request", "resolving", "bind-wait");
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_new_to_greeting),
		T(test_new_to_proxy_to_greeting),
		T(test_proxy_to_stopped_on_garbage),
		T(test_greeting_to_request),
		T(test_greeting_to_auth),
		T(test_greeting_to_request4),
		T(test_greeting_to_closing_without_acceptable_method),
		T(test_greeting_to_stopped_on_bad_version),
		T(test_auth_to_request),
		T(test_auth_to_auth_delay_to_closing),
		T(test_auth_delay_to_stopped),
		T(test_auth_to_auth_delay_when_locked_out),
		T(test_auth_check_to_stopped_when_client_closes),
		T(test_auth_to_closing_on_bad_version),
		T(test_auth_to_stopped_when_client_closes),
		T(test_request_to_connecting_to_relay),
		T(test_request_to_closing_when_denied),
		T(test_request_to_stopped_on_bad_version),
		T(test_request_to_resolving_to_connecting),
		T(test_request_to_bind_wait_to_relay),
		T(test_bind_wait_to_closing_on_timeout),
		T(test_bind_wait_to_stopped_when_client_closes),
		T(test_request_to_udp_to_stopped),
		T(test_request4_to_connecting),
		T(test_request4_to_resolving),
		T(test_request4_to_bind_wait),
		T(test_request4_to_closing_when_denied),
		T(test_request4_to_stopped_when_client_closes),
		T(test_resolving_to_closing_on_bad_name),
		T(test_resolving_to_stopped),
		T(test_connecting_to_closing_when_refused),
		T(test_connecting_to_stopped),
		T(test_relay_to_stopped_when_both_sides_close),
		T(test_closing_to_stopped_when_client_closes),
		T(test_handshake_timeout_stops_in_greeting),
		T(test_request_to_parent_greeting_auth_reply_relay),
		T(test_request4_to_parent_connecting_to_parent_reply),
		T(test_parent_reply_to_parent_bind_wait_to_relay),
		T(test_parent_bind_wait_to_closing_on_timeout_and_stopped),
		T(test_resolving_to_resolving_and_to_parent_connecting),
		T(test_resolving_to_bind_wait),
		cmocka_unit_test(test_parent_states_fail_over_every_way),
		cmocka_unit_test(test_table_names_are_distinct_and_every_state_can_stop),
		cmocka_unit_test(test_architecture_diagram_matches_the_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
