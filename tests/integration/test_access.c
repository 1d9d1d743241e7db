/*
 * Access control and limits against the real daemon (issue 6): client rules
 * (decided at accept, before any byte; first match wins; none matching is a
 * denial), request rules (REP 02 and a log line naming the rule's line;
 * domain rules on the asked name, network rules on the address actually
 * connected to), the built-in loopback protection for clients that are not
 * on loopback, the open-proxy refusal of -t and of startup, the connection
 * and session limits, the auth lockout and the handshake deadline against
 * a slowloris client while others are served.
 *
 * All clients are on loopback: distinct clients are distinct source
 * addresses (127.0.0.2, 127.0.0.3 ...), and a client "elsewhere" is one
 * that a proxy-protocol listener is told about by a PROXY header.
 * Refusals are logged at most 5 times a second per daemon, so a test whose
 * subject is the log line first lets a second pass.
 */
#include "it_acl_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REFUSAL_LOG_WINDOW_MS 1100 /* the daemon's refusal log rate window, + margin */
/* microsocks has none of this; any capability only socks5d has keeps it
 * from running these groups (they skip). */
#define SOCKS5D_ONLY IT_CAP_RESOLVER

static uint16_t proxy_port; /* the proxy-protocol listener of the group */

/* A request on fd (already greeted) and its exact refusal with rep. */
static void
request_refused(int fd, uint8_t cmd, const uint8_t *addr, size_t addr_len, uint8_t rep)
{
	uint8_t msg[300];

	msg[0] = 0x05;
	msg[1] = cmd;
	msg[2] = 0x00;
	memcpy(msg + 3, addr, addr_len);
	it_send_bytes(fd, msg, 3 + addr_len);
	it_acl_expect_refusal(fd, rep);
}

/* Dials from src (with an optional PROXY header), authenticates; fails the
 * test when that does not work. */
static int
greeted(const char *src, uint16_t port, const void *hdr, size_t hdr_len, const char *user,
	const char *pass)
{
	char err[256];
	int fd = it_acl_dial(src, port, hdr, hdr_len, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s", err);
	if (it_acl_auth(fd, user, pass, err, sizeof(err)) < 0)
		fail_msg("client %s: %s", src ? src : "127.0.0.1", err);
	return fd;
}

/* ======================================================================
 * client rules
 * ====================================================================== */

static void
test_client_allowed_by_rule_is_served(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .src = "127.0.0.2", .port = fx->d.port };
	int fd = it_acl_open(&c, &it_tg.echo4);

	it_expect_echo(fd, 4096, 61);
	it_close(fd);
}

static void
test_client_denied_by_rule_is_closed_before_any_byte_and_logged(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char err[256], needle[512];
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	fd = it_acl_dial("127.0.0.3", fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	/* Nothing sent: a close within 1 s (the handshake deadline is 10 s)
	 * can only be the decision at accept. */
	it_acl_expect_shut(fd, 1000, "client 127.0.0.3 (client deny 127.0.0.3)");
	snprintf(needle, sizeof(needle), "client 127.0.0.3:%u denied by %s:%d", it_local_port(fd),
		fx->d.conf, it_acl_conf_line(&fx->d, 3));
	it_close(fd);
	it_acl_expect_log(&fx->d, needle, 2000);
}

static void
test_client_matching_no_rule_is_denied(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	char err[256], needle[128];
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	fd = it_acl_dial("127.0.0.4", fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	/* Sent into a connection that is being closed: whether the send
	 * fails or not, no method reply may come back. */
	(void)it_send_all(fd, greet, sizeof(greet));
	it_acl_expect_shut(fd, 1000, "client 127.0.0.4 (matches no client rule)");
	snprintf(needle, sizeof(needle), "client 127.0.0.4:%u denied: no client rule allows it",
		it_local_port(fd));
	it_close(fd);
	it_acl_expect_log(&fx->d, needle, 2000);
}

static void
test_proxy_client_denied_by_its_real_address_first_match_wins(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char hdr[108], err[256], needle[512];
	size_t n = it_acl_proxy_v1(hdr, "198.51.100.9", 5555, "127.0.0.1", proxy_port);
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	/* The TCP source (127.0.0.1) is allowed; the client the header names
	 * is in 198.51.100.0/24, denied by line 4 before line 6 could allow
	 * it. */
	fd = it_acl_dial(NULL, proxy_port, hdr, n, err, sizeof(err));
	assert_true(fd >= 0);
	it_acl_expect_shut(fd, 1000, "PROXY client 198.51.100.9 (client deny 198.51.100.0/24)");
	it_close(fd);
	snprintf(needle, sizeof(needle), "client 198.51.100.9:5555 denied by %s:%d", fx->d.conf,
		it_acl_conf_line(&fx->d, 4));
	it_acl_expect_log(&fx->d, needle, 2000);
}

static void
test_proxy_client_allowed_by_its_real_address_is_served(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char hdr[108];
	const struct it_acl_client c = { .port = proxy_port,
		.hdr = hdr,
		.hdr_len = it_acl_proxy_v1(hdr, "192.0.2.7", 5555, "127.0.0.1", proxy_port) };
	int fd = it_acl_open(&c, &it_tg.echo4);

	it_expect_echo(fd, 4096, 62);
	it_close(fd);
	it_acl_expect_log(&fx->d, "client=192.0.2.7:5555 ", 3000);
}

static void
test_proxy_client_matching_no_rule_is_denied(void **state)
{
	char hdr[108], err[256];
	size_t n;
	int fd;

	it_fx(state);
	n = it_acl_proxy_v1(hdr, "203.0.113.5", 5555, "127.0.0.1", proxy_port);
	fd = it_acl_dial(NULL, proxy_port, hdr, n, err, sizeof(err));
	assert_true(fd >= 0);
	it_acl_expect_shut(fd, 1000, "PROXY client 203.0.113.5 (matches no client rule)");
	it_close(fd);
}

static int
setup_client_rules(void **state)
{
	char conf[1024];

	proxy_port = it_acl_free_port();
	if (proxy_port == 0)
		return -1;
	snprintf(conf, sizeof(conf),
		"listen 127.0.0.1:%u proxy-protocol\n"            /* 1 */
		"proxy-protocol-from 127.0.0.1\n"                 /* 2 */
		"client deny 127.0.0.3\n"                         /* 3 */
		"client deny 198.51.100.0/24\n"                   /* 4 */
		"client allow 127.0.0.1 127.0.0.2 192.0.2.0/24\n" /* 5 */
		"client allow 198.51.100.9\n"                     /* 6: shadowed by 4 */
		"client allow ::1\n"                              /* 7 */
		"rule allow to 127.0.0.0/8\n"                     /* 8: for 192.0.2.7 */
		"log-level info\n",
		proxy_port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

/* ======================================================================
 * request rules
 * ====================================================================== */

static uint16_t
echo_port(void)
{
	return it_tg.echo4.port;
}

static void
test_request_allowed_by_rule_connects_by_address_and_by_name(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const char *names[] = { "127.0.0.1", "localhost" };

	/* Line 9 allows 127.0.0.0/8: for "localhost" once it resolved. */
	for (size_t i = 0; i < 2; i++) {
		uint8_t addr[64];
		struct it_reply r;
		char err[256];
		size_t n = i == 0 ? it_acl_addr4(addr, names[i], echo_port())
				  : it_acl_addr_name(addr, names[i], echo_port());
		int fd = greeted(NULL, fx->d.port, NULL, 0, "alice", "wonderland");

		if (it_acl_request(fd, 0x01, addr, n, &r, err, sizeof(err)) < 0)
			fail_msg("alice CONNECT %s:%u: %s", names[i], echo_port(), err);
		if (r.rep != 0x00)
			fail_msg("alice CONNECT %s:%u: REP %02x, want 00 (rule allow to "
				 "127.0.0.0/8)",
				names[i], echo_port(), r.rep);
		it_expect_echo(fd, 4096, 77 + i);
		it_close(fd);
	}
}

static void
test_request_denials_name_the_rule_line(void **state)
{
	struct it_fixture *fx = it_fx(state);
	static const struct {
		const char *src; /* client address */
		const char *user;
		const char *name; /* domain target, or NULL: 127.0.0.1 */
		int port_kind;    /* 0 echo4, 1 peer4 */
		int line;         /* the rule that must deny it */
	} cases[] = {
		/* "*.blocked.example" (4) is not blocked.example itself (5). */
		{ NULL, "alice", "blocked.example", 0, 5 },
		{ NULL, "alice", "www.blocked.example", 0, 4 },
		/* Names compare as DNS does: case and a final dot do not
		 * get around a rule. */
		{ NULL, "alice", "BLOCKED.Example", 0, 5 },
		{ NULL, "alice", "www.blocked.example.", 0, 4 },
		{ "127.0.0.2", "alice", NULL, 0, 6 },
		{ NULL, "alice", NULL, 1, 7 },
		{ NULL, "bob", NULL, 0, 8 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *pass = strcmp(cases[i].user, "bob") == 0 ? "builder" : "wonderland";
		uint16_t port = cases[i].port_kind ? it_tg.peer4.port : echo_port();
		char needle[512];
		uint8_t addr[300];
		size_t n = cases[i].name ? it_acl_addr_name(addr, cases[i].name, port)
					 : it_acl_addr4(addr, "127.0.0.1", port);
		int fd;

		/* Five denials fit in one second of the daemon's refusal log. */
		if (i % 5 == 0)
			it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
		fd = greeted(cases[i].src, fx->d.port, NULL, 0, cases[i].user, pass);
		print_message("[   INFO   ] %s from %s to %s:%u: want REP 02 by line %d\n",
			cases[i].user, cases[i].src ? cases[i].src : "127.0.0.1",
			cases[i].name ? cases[i].name : "127.0.0.1", port, cases[i].line);
		snprintf(needle, sizeof(needle), "from %s:%u denied by %s:%d",
			cases[i].src ? cases[i].src : "127.0.0.1", it_local_port(fd), fx->d.conf,
			it_acl_conf_line(&fx->d, cases[i].line));
		request_refused(fd, 0x01, addr, n, 0x02);
		it_close(fd);
		it_acl_expect_log(&fx->d, needle, 2000);
	}
}

static void
test_network_rule_applies_to_the_address_a_name_resolves_to(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t addr[64];
	char needle[512];
	size_t n = it_acl_addr_name(addr, "localhost", echo_port());
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	/* Line 8 "rule deny to 127.0.0.0/8 user bob" names a network; bob
	 * asks for a name: only after resolution can line 8 match. */
	fd = greeted(NULL, fx->d.port, NULL, 0, "bob", "builder");
	snprintf(needle, sizeof(needle), "from 127.0.0.1:%u denied by %s:%d", it_local_port(fd),
		fx->d.conf, it_acl_conf_line(&fx->d, 8));
	request_refused(fd, 0x01, addr, n, 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, needle, 2000);
}

static void
test_request_matching_no_rule_is_denied(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t addr[64];
	const uint8_t bind_any[] = { 0x01, 0, 0, 0, 0, 0, 0 };
	char needle[512];
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	/* 192.0.2.1 is outside every "to": denied before any connect
	 * attempt (TEST-NET-1 would otherwise hang until the timeout). */
	fd = greeted(NULL, fx->d.port, NULL, 0, "alice", "wonderland");
	snprintf(needle, sizeof(needle), "from 127.0.0.1:%u denied: no rule allows it",
		it_local_port(fd));
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "192.0.2.1", 9), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, needle, 2000);
	/* Line 9 allows only CONNECT: a BIND matches nothing. */
	fd = greeted(NULL, fx->d.port, NULL, 0, "alice", "wonderland");
	request_refused(fd, 0x02, bind_any, sizeof(bind_any), 0x02);
	it_close(fd);
}

static int
setup_request_rules(void **state)
{
	char conf[1024];

	snprintf(conf, sizeof(conf),
		"auth password\n"                             /* 1 */
		"user alice wonderland\n"                     /* 2 */
		"user bob builder\n"                          /* 3 */
		"rule deny to *.blocked.example\n"            /* 4 */
		"rule deny to blocked.example\n"              /* 5 */
		"rule deny from 127.0.0.2\n"                  /* 6 */
		"rule deny port %u\n"                         /* 7 */
		"rule deny to 127.0.0.0/8 user bob\n"         /* 8 */
		"rule allow to 127.0.0.0/8,::1 cmd connect\n" /* 9 */
		"log-level info\n",
		it_tg.peer4.port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, "alice", "wonderland");
}

/* ======================================================================
 * built-in loopback protection
 * ====================================================================== */

/* Greets as the non-loopback client 192.0.2.7 through the PROXY listener. */
static int
greeted_from_elsewhere(uint16_t port)
{
	char hdr[108];
	size_t n = it_acl_proxy_v1(hdr, "192.0.2.7", 5555, "127.0.0.1", port);

	return greeted(NULL, port, hdr, n, NULL, NULL);
}

static void
test_non_loopback_client_cannot_reach_proxy_loopback(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t addr[64];
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "127.0.0.1", echo_port()), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d,
		"from 192.0.2.7:5555 denied: built-in protection: loopback of the proxy host",
		2000);
	/* A name that resolves to loopback is the same destination. */
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr_name(addr, "localhost", echo_port()), 0x02);
	it_close(fd);
	/* Nor another loopback address, nor the daemon itself (a loop). */
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "127.0.0.9", echo_port()), 0x02);
	it_close(fd);
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "127.0.0.1", fx->d.port), 0x02);
	it_close(fd);
}

static void
test_non_loopback_client_cannot_reach_loopback_via_unspecified_address(void **state)
{
	/* connect() to 0.0.0.0 or :: reaches the local host on Linux: the
	 * target sees a loopback peer. The protection must cover them. */
	static const struct {
		uint8_t atyp;
		const char *text; /* numeric, or the name for ATYP 03 */
		uint8_t addr[16];
		bool v6;
	} cases[] = {
		{ 0x01, "0.0.0.0", { 0 }, false },
		{ 0x03, "0.0.0.0", { 0 }, false },
		{ 0x04, "::ffff:0.0.0.0", { [10] = 0xff, [11] = 0xff }, false },
		{ 0x04, "::", { 0 }, true },
	};
	int bad = 0;

	it_fx(state);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct it_target *t = cases[i].v6 ? &it_tg.echo6 : &it_tg.echo4;
		uint8_t addr[32];
		struct it_reply r;
		char err[256];
		size_t n = 0;
		int fd;

		if (cases[i].v6 && !it_have_ipv6())
			continue;
		addr[n++] = cases[i].atyp;
		if (cases[i].atyp == 0x03) {
			addr[n++] = (uint8_t)strlen(cases[i].text);
			memcpy(addr + n, cases[i].text, strlen(cases[i].text));
			n += strlen(cases[i].text);
		} else {
			size_t alen = cases[i].atyp == 0x01 ? 4 : 16;
			memcpy(addr + n, cases[i].addr, alen);
			n += alen;
		}
		addr[n++] = (uint8_t)(t->port >> 8);
		addr[n++] = (uint8_t)t->port;
		fd = greeted_from_elsewhere(proxy_port);
		if (it_acl_request(fd, 0x01, addr, n, &r, err, sizeof(err)) < 0)
			fail_msg("192.0.2.7 CONNECT %s (ATYP %02x): %s", cases[i].text,
				cases[i].atyp, err);
		print_message("[   INFO   ] 192.0.2.7 CONNECT %s%s%s:%u (ATYP %02x): REP %02x\n",
			cases[i].atyp == 0x04 ? "[" : "", cases[i].text,
			cases[i].atyp == 0x04 ? "]" : "", t->port, cases[i].atyp, r.rep);
		bad += r.rep != 0x02;
		it_close(fd);
	}
	if (bad)
		fail_msg("%d CONNECTs to an unspecified address reached the proxy's loopback "
			 "from a non-loopback client; want REP 02",
			bad);
}

static void
test_loopback_client_may_reach_proxy_loopback(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .src = "127.0.0.2", .port = fx->d.port };
	int fd = it_acl_open(&c, &it_tg.echo4);

	it_expect_echo(fd, 4096, 63);
	it_close(fd);
}

/* The group's second daemon: the same listeners plus rules. */
static struct it_daemon ruled;
static uint16_t ruled_proxy_port;
static bool ruled_started;

static void
test_rule_naming_loopback_lifts_protection_and_only_for_it(void **state)
{
	uint8_t addr[64];
	struct it_reply r;
	char err[256];
	int fd;

	it_fx(state);
	if (!ruled_started)
		fail_msg("the daemon with rules did not start");
	/* Its "rule allow to 127.0.0.1 port ECHO" names the destination. */
	fd = greeted_from_elsewhere(ruled_proxy_port);
	if (it_acl_request(fd, 0x01, addr, it_acl_addr4(addr, "127.0.0.1", echo_port()), &r, err,
		    sizeof(err)) < 0)
		fail_msg("192.0.2.7 CONNECT 127.0.0.1:%u: %s", echo_port(), err);
	if (r.rep != 0x00)
		fail_msg("192.0.2.7 CONNECT 127.0.0.1:%u with 'rule allow to 127.0.0.1 port %u': "
			 "REP %02x, want 00",
			echo_port(), echo_port(), r.rep);
	it_expect_echo(fd, 4096, 64);
	it_close(fd);
	/* Another port falls to "rule allow all", which names no
	 * destination: the protection still holds. */
	fd = greeted_from_elsewhere(ruled_proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "127.0.0.1", it_tg.peer4.port), 0x02);
	it_close(fd);
}

/* Issue 17: a rule that names the destination by domain says nothing
 * about where the name resolves to; only a network holding the address
 * lifts the protection. "rule allow to localhost port SOURCE" must not let
 * a non-loopback client reach the proxy host's loopback. */
static void
test_domain_rule_does_not_lift_protection(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t addr[64];
	int fd;

	if (!ruled_started)
		fail_msg("the daemon with rules did not start");
	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	fd = greeted_from_elsewhere(ruled_proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr_name(addr, "localhost", it_tg.source4.port),
		0x02);
	it_close(fd);
	it_acl_expect_log(&ruled,
		"from 192.0.2.7:5555 denied: built-in protection: loopback of the proxy host",
		2000);
	(void)fx;
}

/* Issue 17: multicast, the limited broadcast and the host's own
 * non-loopback addresses at the daemon's ports are protected too. */
static void
test_multicast_broadcast_and_own_ports_are_protected(void **state)
{
	struct it_fixture *fx = it_fx(state);
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
	} own;
	char own_ip[INET_ADDRSTRLEN];
	uint8_t addr[64];
	int fd;

	it_sleep_ms(REFUSAL_LOG_WINDOW_MS);
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "224.0.0.1", 80), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, "denied: built-in protection: multicast", 2000);
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, "255.255.255.255", 80), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, "denied: built-in protection: broadcast", 2000);
	/* The host's first non-loopback IPv4 address at the daemon's own
	 * port, where only the daemon's loopback listener would otherwise
	 * refuse the connection (REP 05), or a wildcard one loop. */
	if (!it_host_ipv4(&own.sin)) {
		print_message("[   INFO   ] no non-loopback IPv4 address: own-port case skipped\n");
		return;
	}
	inet_ntop(AF_INET, &own.sin.sin_addr, own_ip, sizeof(own_ip));
	fd = greeted_from_elsewhere(proxy_port);
	request_refused(fd, 0x01, addr, it_acl_addr4(addr, own_ip, proxy_port), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, "denied: built-in protection: a port of the proxy itself", 2000);
}

static int
setup_protection(void **state)
{
	char conf[512];

	proxy_port = it_acl_free_port();
	ruled_proxy_port = it_acl_free_port();
	if (proxy_port == 0 || ruled_proxy_port == 0)
		return -1;
	if (it_server_has(SOCKS5D_ONLY)) {
		snprintf(conf, sizeof(conf),
			"listen 127.0.0.1:%u proxy-protocol\nproxy-protocol-from 127.0.0.1\n"
			"rule allow to 127.0.0.1 port %u\nrule allow to localhost port %u\n"
			"rule allow all\nlog-level info\n",
			ruled_proxy_port, echo_port(), it_tg.source4.port);
		if (it_daemon_start(&ruled, conf) != 0)
			return -1;
		ruled_started = true;
	}
	snprintf(conf, sizeof(conf),
		"listen 127.0.0.1:%u proxy-protocol\nproxy-protocol-from 127.0.0.1\n"
		"log-level info\n",
		proxy_port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

static int
teardown_protection(void **state)
{
	if (ruled_started && it_daemon_stop(&ruled) < 0) {
		fprintf(stderr, "[  ERROR   ] daemon with rules did not exit cleanly on SIGTERM\n");
		it_harness_failures++;
	}
	ruled_started = false;
	return it_fixture_stop(state);
}

/* ======================================================================
 * open-proxy refusal
 * ====================================================================== */

static const char *
server_path(void)
{
	const char *p = getenv("SOCKS5D");

	return p != NULL && *p != '\0' ? p : "build/socks5d";
}

/* Writes text to DIR/socks5d.conf and runs socks5d with args (-t or
 * nothing) on it; out gets what it printed. Returns the exit status. */
static int
run_conf(const char *text, bool check_only, char *out, size_t cap, char *conf_path, size_t conf_cap)
{
	char dir[] = "/tmp/socks5d-it-acl.XXXXXX";
	int st;

	if (mkdtemp(dir) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(conf_path, conf_cap, "%s/socks5d.conf", dir);
	FILE *f = fopen(conf_path, "w");
	if (f == NULL)
		fail_msg("%s: %s", conf_path, strerror(errno));
	fputs(text, f);
	fclose(f);
	char *argv_t[] = { (char *)server_path(), "-t", "-f", conf_path, NULL };
	char *argv_run[] = { (char *)server_path(), "-f", conf_path, NULL };
	/* A daemon that wrongly starts is killed at the bound (-1). */
	st = it_acl_run_capture(check_only ? argv_t : argv_run, 3000, out, cap);
	unlink(conf_path);
	rmdir(dir);
	return st;
}

static void
expect_open_proxy_refused(bool check_only)
{
	char conf[256], out[4096], path[300], where[340];
	uint16_t port = it_acl_free_port();

	it_require(SOCKS5D_ONLY);
	snprintf(conf, sizeof(conf), "log-level info\nlisten 0.0.0.0:%u\n", port);
	int st = run_conf(conf, check_only, out, sizeof(out), path, sizeof(path));
	print_message("[   INFO   ] socks5d%s said: %s", check_only ? " -t" : "", out);
	if (st != 1)
		fail_msg("socks5d%s with 'listen 0.0.0.0' and no auth or client rule: exit %d, "
			 "want 1",
			check_only ? " -t" : "", st);
	if (strstr(out, "open proxy") == NULL)
		fail_msg("message does not say \"open proxy\"");
	snprintf(where, sizeof(where), "%s:2", path);
	if (strstr(out, where) == NULL)
		fail_msg("message does not name the listen line %s", where);
}

static void
test_config_check_refuses_open_proxy_naming_the_listen_line(void **state)
{
	(void)state;
	expect_open_proxy_refused(true);
}

static void
test_startup_refuses_open_proxy(void **state)
{
	(void)state;
	expect_open_proxy_refused(false);
}

static void
test_config_check_accepts_wildcard_with_client_rule_or_password(void **state)
{
	char conf[256], out[4096], path[300];
	uint16_t port = it_acl_free_port();
	int st;

	(void)state;
	it_require(SOCKS5D_ONLY);
	snprintf(conf, sizeof(conf), "listen 0.0.0.0:%u\nclient allow 127.0.0.0/8\n", port);
	st = run_conf(conf, true, out, sizeof(out), path, sizeof(path));
	if (st != 0)
		fail_msg("-t with a client rule: exit %d, want 0; said: %s", st, out);
	snprintf(conf, sizeof(conf), "listen 0.0.0.0:%u\nauth password\nuser alice wonderland\n",
		port);
	st = run_conf(conf, true, out, sizeof(out), path, sizeof(path));
	if (st != 0)
		fail_msg("-t with auth password: exit %d, want 0; said: %s", st, out);
}

/* ======================================================================
 * limits
 * ====================================================================== */

/* Opens n sessions from c into fds[]; fails the test when one fails. */
static void
open_sessions(const struct it_acl_client *c, int *fds, int n)
{
	for (int i = 0; i < n; i++)
		fds[i] = it_acl_open(c, &it_tg.echo4);
}

static void
close_sessions(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		it_close(fds[i]);
		fds[i] = -1;
	}
}

static void
expect_session_after_close(const struct it_acl_client *c, const char *what)
{
	char err[256];
	/* The slot is free once the daemon has seen the close: retried. */
	int fd = it_acl_session_retry(c, &it_tg.echo4, 3000, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s: no new session within 3 s of closing one: %s", what, err);
	it_expect_echo(fd, 1000, 65);
	it_close(fd);
}

static void
test_max_connections_closes_the_extra_connection_at_once(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client c = { .port = fx->d.port };
	int fds[3], fd;
	char err[256];

	open_sessions(&c, fds, 3);
	/* The 4th is accepted and closed, not left in the backlog. */
	fd = it_acl_dial(NULL, fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	it_acl_expect_shut(fd, 1000, "4th connection with max-connections 3");
	it_close(fd);
	for (int i = 0; i < 3; i++)
		it_expect_echo(fds[i], 1000, 66 + (uint64_t)i);
	it_acl_expect_log(&fx->d, "max-connections 3 reached", 2000);
	it_close(fds[0]);
	fds[0] = -1;
	expect_session_after_close(&c, "max-connections 3 after closing one");
	close_sessions(fds + 1, 2);
	/* Let the daemon see those closes before the teardown's session. */
	expect_session_after_close(&c, "max-connections 3 after closing all");
}

static int
setup_max_connections(void **state)
{
	return it_fixture_start_for(state, SOCKS5D_ONLY, "max-connections 3\nlog-level info\n",
		NULL, NULL);
}

static void
test_max_connections_per_ip_refuses_only_that_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client a = { .src = "127.0.0.2", .port = fx->d.port };
	const struct it_acl_client b = { .src = "127.0.0.3", .port = fx->d.port };
	int fa[2], fb[2], fd;
	char err[256];

	open_sessions(&a, fa, 2);
	fd = it_acl_dial("127.0.0.2", fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	it_acl_expect_shut(fd, 1000, "3rd connection from 127.0.0.2 with max-connections-per-ip 2");
	it_close(fd);
	/* Another address has its own count. */
	open_sessions(&b, fb, 2);
	for (int i = 0; i < 2; i++) {
		it_expect_echo(fa[i], 1000, 70 + (uint64_t)i);
		it_expect_echo(fb[i], 1000, 72 + (uint64_t)i);
	}
	it_acl_expect_log(&fx->d, "refused: max-connections-per-ip 2 reached", 2000);
	it_close(fa[0]);
	fa[0] = -1;
	expect_session_after_close(&a, "127.0.0.2 after closing one of its two");
	close_sessions(fa + 1, 1);
	close_sessions(fb, 2);
}

static void
test_max_connections_per_ip_counts_the_proxied_address(void **state)
{
	char h9[108], h10[108], err[256];
	struct it_acl_client a = { .hdr = h9 }, b = { .hdr = h10 };
	int fa[2], fd;

	it_fx(state);
	a.port = b.port = proxy_port;
	a.hdr_len = it_acl_proxy_v1(h9, "192.0.2.9", 4000, "127.0.0.1", proxy_port);
	b.hdr_len = it_acl_proxy_v1(h10, "192.0.2.10", 4000, "127.0.0.1", proxy_port);
	/* Every connection comes from 127.0.0.1; the limit is per client
	 * the headers name. */
	open_sessions(&a, fa, 2);
	fd = it_acl_dial(NULL, proxy_port, h9, a.hdr_len, err, sizeof(err));
	assert_true(fd >= 0);
	it_acl_expect_shut(fd, 1000, "3rd PROXY client 192.0.2.9 with max-connections-per-ip 2");
	it_close(fd);
	fd = it_acl_open(&b, &it_tg.echo4);
	it_expect_echo(fd, 1000, 73);
	it_close(fd);
	close_sessions(fa, 2);
}

static int
setup_max_per_ip(void **state)
{
	char conf[256];

	if ((proxy_port = it_acl_free_port()) == 0)
		return -1;
	/* The PROXY listener lets clients "elsewhere" in; the rule lets
	 * them reach the loopback targets. */
	snprintf(conf, sizeof(conf),
		"max-connections-per-ip 2\nlisten 127.0.0.1:%u proxy-protocol\n"
		"proxy-protocol-from 127.0.0.1\nrule allow to 127.0.0.0/8\nlog-level info\n",
		proxy_port);
	return it_fixture_start_for(state, SOCKS5D_ONLY, conf, NULL, NULL);
}

static void
test_max_sessions_per_user_refuses_with_rep_02(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_acl_client alice = { .port = fx->d.port,
		.user = "alice",
		.pass = "wonderland" };
	const struct it_acl_client bob = { .src = "127.0.0.2",
		.port = fx->d.port,
		.user = "bob",
		.pass = "builder" };
	uint8_t addr[32];
	int fa[2], fd;

	open_sessions(&alice, fa, 2);
	/* Authentication still succeeds; the request is what is refused. */
	fd = greeted(NULL, fx->d.port, NULL, 0, "alice", "wonderland");
	request_refused(fd, 0x01, addr, it_target_addr(&it_tg.echo4, addr), 0x02);
	it_close(fd);
	it_acl_expect_log(&fx->d, "user \"alice\" refused: max-sessions-per-user 2 reached", 2000);
	/* Another user is not counted with alice. */
	fd = it_acl_open(&bob, &it_tg.echo4);
	it_expect_echo(fd, 1000, 74);
	it_close(fd);
	it_close(fa[0]);
	fa[0] = -1;
	expect_session_after_close(&alice, "alice after closing one of her two");
	close_sessions(fa + 1, 1);
}

static int
setup_max_per_user(void **state)
{
	/* carol is the teardown's normal session. */
	return it_fixture_start_for(state, SOCKS5D_ONLY,
		"auth password\nuser alice wonderland\nuser bob builder\nuser carol c4rol\n"
		"max-sessions-per-user 2\nlog-level info\n",
		"carol", "c4rol");
}

/* ======================================================================
 * auth lockout and the handshake deadline
 * ====================================================================== */

/* One password attempt from src; returns the auth status byte and stores
 * how long the answer took. */
static uint8_t
try_password(const char *src, uint16_t port, const char *pass, uint64_t *took_ms)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
	uint8_t msg[64], st[2];
	size_t n = 0;
	char err[256];
	int fd = it_acl_dial(src, port, NULL, 0, err, sizeof(err));

	if (fd < 0)
		fail_msg("%s", err);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	msg[n++] = 0x01;
	msg[n++] = 5;
	memcpy(msg + n, "alice", 5);
	n += 5;
	msg[n++] = (uint8_t)strlen(pass);
	memcpy(msg + n, pass, strlen(pass));
	n += strlen(pass);
	uint64_t t0 = it_now_ms();
	it_send_bytes(fd, msg, n);
	if (it_recv_exact(fd, st, 2, 3000) != 2)
		fail_msg("%s: no auth status within 3 s", src);
	*took_ms = it_now_ms() - t0;
	assert_int_equal(st[0], 0x01);
	if (st[1] != 0x00) {
		enum it_close c = it_wait_close(fd, 2000);
		if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
			fail_msg("after a failed auth want a close, got %s", it_close_str(c));
	} else {
		/* Prove the session is real: CONNECT works. */
		struct it_reply r;
		uint8_t addr[32];
		if (it_acl_request(fd, 0x01, addr, it_target_addr(&it_tg.echo4, addr), &r, err,
			    sizeof(err)) < 0 ||
			r.rep != 0)
			fail_msg("%s: CONNECT after auth: %s", src, err);
		it_expect_echo(fd, 1000, 75);
	}
	it_close(fd);
	return st[1];
}

static void
test_three_failures_lock_out_the_address_for_the_lockout_only(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint64_t took, t_lock;
	uint8_t st;

	/* 3 failures within 60 s: each answered after the fixed ~0.5 s. */
	for (int i = 0; i < 3; i++) {
		st = try_password("127.0.0.3", fx->d.port, "wrong", &took);
		print_message("[   INFO   ] failure %d: status %02x after %llu ms\n", i + 1, st,
			(unsigned long long)took);
		if (st == 0x00)
			fail_msg("wrong password accepted");
		assert_in_range(took, 400, 1500);
	}
	/* The lockout started when the third failure was checked, i.e. about
	 * `took` before now. */
	t_lock = it_now_ms() - took;
	st = try_password("127.0.0.3", fx->d.port, "wonderland", &took);
	if (st == 0x00)
		fail_msg("right password accepted from 127.0.0.3 during its lockout");
	assert_in_range(took, 400, 1500);
	it_acl_expect_log(&fx->d, "locked out for 2 s after 3 failed authentications", 2000);
	it_acl_expect_log(&fx->d, "is locked out for", 2000);
	/* Another address is not locked. */
	st = try_password("127.0.0.2", fx->d.port, "wonderland", &took);
	if (st != 0x00)
		fail_msg("right password from 127.0.0.2 refused (status %02x) while only "
			 "127.0.0.3 is locked out",
			st);
	/* After the 2 s lockout, 127.0.0.3 gets in again. */
	uint64_t until = t_lock + 2000 + 300;
	if (it_now_ms() < until)
		it_sleep_ms((unsigned)(until - it_now_ms()));
	st = try_password("127.0.0.3", fx->d.port, "wonderland", &took);
	if (st != 0x00)
		fail_msg("right password from 127.0.0.3 refused (status %02x) %llu ms after "
			 "its 2 s lockout began",
			st, (unsigned long long)(it_now_ms() - t_lock));
}

static void
test_slowloris_is_dropped_at_deadline_while_others_are_served(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 }, chosen[] = { 0x05, 0x02 };
	const uint8_t up_head[] = { 0x01, 0xff }; /* a 255-byte name, trickled */
	const struct it_acl_client normal = { .src = "127.0.0.5",
		.port = fx->d.port,
		.user = "carol",
		.pass = "c4rol" };
	enum it_close c = IT_CLOSE_TIMEOUT;
	uint64_t t0, elapsed, worst = 0;
	int served = 0;
	char err[256];
	int fd;

	t0 = it_now_ms();
	fd = it_acl_dial("127.0.0.4", fx->d.port, NULL, 0, err, sizeof(err));
	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_bytes(fd, up_head, sizeof(up_head));
	while (it_now_ms() - t0 < 6000) {
		c = it_wait_close(fd, 300);
		if (c != IT_CLOSE_TIMEOUT)
			break;
		if (it_send_all(fd, "a", 1) < 0) {
			c = IT_CLOSE_RST;
			break;
		}
		/* Meanwhile a normal client completes a whole session. */
		uint64_t s0 = it_now_ms();
		int nfd = it_acl_session(&normal, &it_tg.echo4, err, sizeof(err));
		if (nfd < 0)
			fail_msg("normal client while the slowloris trickles: %s", err);
		it_expect_echo(nfd, 1000, 76);
		it_close(nfd);
		uint64_t took = it_now_ms() - s0;
		worst = took > worst ? took : worst;
		served++;
	}
	elapsed = it_now_ms() - t0;
	it_close(fd);
	print_message("[   INFO   ] slowloris dropped after %llu ms (%s); %d normal sessions, "
		      "slowest %llu ms\n",
		(unsigned long long)elapsed, it_close_str(c), served, (unsigned long long)worst);
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("slowloris (1 byte / 300 ms): want dropped at the 2 s handshake "
			 "deadline, got %s after %llu ms",
			it_close_str(c), (unsigned long long)elapsed);
	assert_in_range(elapsed, 1700, 3500);
	assert_true(served >= 4);
	assert_true(worst < 1000);
}

static int
setup_lockout(void **state)
{
	return it_fixture_start_for(state, SOCKS5D_ONLY,
		"auth password\nuser alice wonderland\nuser carol c4rol\n"
		"auth-fail-limit 3 60 2\ntimeout handshake 2\nlog-level info\n",
		"carol", "c4rol");
}

/* ====================================================================== */

int
it_run_access_tests(void)
{
	const struct CMUnitTest client_tests[] = {
		IT_TEST(test_client_allowed_by_rule_is_served),
		IT_TEST(test_client_denied_by_rule_is_closed_before_any_byte_and_logged),
		IT_TEST(test_client_matching_no_rule_is_denied),
		IT_TEST(test_proxy_client_denied_by_its_real_address_first_match_wins),
		IT_TEST(test_proxy_client_allowed_by_its_real_address_is_served),
		IT_TEST(test_proxy_client_matching_no_rule_is_denied),
	};
	const struct CMUnitTest rule_tests[] = {
		IT_TEST(test_request_allowed_by_rule_connects_by_address_and_by_name),
		IT_TEST(test_request_denials_name_the_rule_line),
		IT_TEST(test_network_rule_applies_to_the_address_a_name_resolves_to),
		IT_TEST(test_request_matching_no_rule_is_denied),
	};
	const struct CMUnitTest protection_tests[] = {
		IT_TEST(test_non_loopback_client_cannot_reach_proxy_loopback),
		IT_TEST(test_non_loopback_client_cannot_reach_loopback_via_unspecified_address),
		IT_TEST(test_loopback_client_may_reach_proxy_loopback),
		IT_TEST(test_rule_naming_loopback_lifts_protection_and_only_for_it),
		IT_TEST(test_domain_rule_does_not_lift_protection),
		IT_TEST(test_multicast_broadcast_and_own_ports_are_protected),
	};
	const struct CMUnitTest open_proxy_tests[] = {
		cmocka_unit_test(test_config_check_refuses_open_proxy_naming_the_listen_line),
		cmocka_unit_test(test_startup_refuses_open_proxy),
		cmocka_unit_test(test_config_check_accepts_wildcard_with_client_rule_or_password),
	};
	const struct CMUnitTest max_conn_tests[] = {
		IT_TEST(test_max_connections_closes_the_extra_connection_at_once),
	};
	const struct CMUnitTest max_ip_tests[] = {
		IT_TEST(test_max_connections_per_ip_refuses_only_that_address),
		IT_TEST(test_max_connections_per_ip_counts_the_proxied_address),
	};
	const struct CMUnitTest max_user_tests[] = {
		IT_TEST(test_max_sessions_per_user_refuses_with_rep_02),
	};
	const struct CMUnitTest lockout_tests[] = {
		IT_TEST(test_three_failures_lock_out_the_address_for_the_lockout_only),
		IT_TEST(test_slowloris_is_dropped_at_deadline_while_others_are_served),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("access: client rules", client_tests,
		setup_client_rules, it_fixture_stop);
	failed += cmocka_run_group_tests_name("access: request rules", rule_tests,
		setup_request_rules, it_fixture_stop);
	failed += cmocka_run_group_tests_name("access: loopback protection", protection_tests,
		setup_protection, teardown_protection);
	failed += cmocka_run_group_tests_name("access: open-proxy refusal", open_proxy_tests, NULL,
		NULL);
	failed += cmocka_run_group_tests_name("access: max-connections 3", max_conn_tests,
		setup_max_connections, it_fixture_stop);
	failed += cmocka_run_group_tests_name("access: max-connections-per-ip 2", max_ip_tests,
		setup_max_per_ip, it_fixture_stop);
	failed += cmocka_run_group_tests_name("access: max-sessions-per-user 2", max_user_tests,
		setup_max_per_user, it_fixture_stop);
	failed += cmocka_run_group_tests_name("access: auth lockout, handshake deadline",
		lockout_tests, setup_lockout, it_fixture_stop);
	return failed;
}
