/*
 * Issue 19: where traffic leaves. Two groups.
 *
 * "egress (namespaces)" builds its own network: the runner moves into a
 * new network namespace T (the far side: targets, nameservers) and one P
 * (the daemon, the test's clients), joined by two veth pairs e1-t1 and
 * e2-t2; P routes T's addresses through e1 (and, at a worse metric, e2).
 * The target's listeners are bound to t1 and to t2 and say which one took
 * the connection and the source they saw; a nameserver bound to t2 only
 * answers what came through e2. Checked: the routing table's choice by
 * default; external-interface moving CONNECT (IPv4, IPv6), UDP ASSOCIATE
 * and the resolver's UDP and TCP queries to e2, per rule and per user
 * too, and a rule's interface leaving DNS alone; a prefix routed to P
 * (AnyIP) giving each session a random address, each user always its own
 * (also after a restart), and a BIND listener an address the far side
 * reaches; Happy Eyeballs with an IPv6 address whose SYNs vanish (a veth
 * to a neighbour that does not exist): IPv6 starts unless resolve-prefer
 * says ipv4 (RFC 8305 §4), IPv4 wins after the delay and long before the
 * connect timeout, "off" waits for the first address's share,
 * and with both families black-holed both were tried (their veths'
 * counters). Skipped, not failed, where namespaces cannot be made or ip(8)
 * is missing. Everything made lives only as long as the processes the
 * group started and the runner's descriptors: the namespaces and their
 * veths go with them; the runner returns to its own namespace at the end.
 *
 * "egress (socket options)" runs on loopback: the daemon's own sockets,
 * the client's and the target's side of a session, are duplicated into
 * the test with pidfd_getfd(2) and every option is read back with
 * getsockopt: the default keepalive, the global settings, a rule's
 * replacing them on both sides (the mark only with CAP_NET_ADMIN); a reload changing the keepalive that
 * clients inherit from a listener it keeps, and its backlog (as ss(8)
 * shows it). And socks5d -t: the warnings and the refusals of issue 19
 * with FILE:LINE.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define EG_TPORT 7777 /* the targets' TCP port in T */
#define EG_UPORT 7778 /* their UDP port */
#define EG_LINE 128

/* ---- the network ------------------------------------------------------------ */

static struct {
	bool ready;            /* built: the namespace tests may run */
	bool moved;            /* the runner left its own namespace */
	const char *why;       /* else why not */
	int orig, t, p;        /* namespace descriptors */
	pid_t anchor;          /* a process of T, for `ip link set ... netns` */
	pid_t tcp_target;      /* the listeners bound to t1 and t2 */
	pid_t udp_target;      /* the same for UDP */
	struct it_dns dns_t2;  /* 10.91.9.53, answers only through t2 */
	struct it_dns dns_any; /* 10.91.9.54, answers through both */
	char ip_path[256];
} eg;

static struct it_daemon eg_daemon;
static bool eg_daemon_up;

/* Runs `ip WORDS...` (words split on blanks) in the current namespace.
 * Returns its exit status. */
static int
eg_ip(const char *cmd)
{
	char buf[512], *argv[32];
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", cmd);
	argv[n++] = eg.ip_path;
	for (char *w = strtok(buf, " "); w != NULL && n < 31; w = strtok(NULL, " "))
		argv[n++] = w;
	argv[n] = NULL;
	return it_run_program(argv, 5000, NULL);
}

/* Runs each command; false (printed) at the first that fails. */
static bool
eg_ip_all(const char *const *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = eg_ip(cmds[i]);
		if (rc != 0) {
			fprintf(stderr, "[   INFO   ] ip %s: exit %d\n", cmds[i], rc);
			return false;
		}
	}
	return true;
}

static bool
eg_enter(int ns)
{
	if (setns(ns, CLONE_NEWNET) == 0)
		return true;
	fprintf(stderr, "setns: %s\n", strerror(errno));
	return false;
}

/* A new namespace for the runner; its descriptor, or -1. */
static int
eg_new_ns(void)
{
	if (unshare(CLONE_NEWNET) < 0)
		return -1;
	eg.moved = true;
	return open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
}

static pid_t
eg_fork_child(void)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
	}
	return pid;
}

/* A listening or UDP socket on ip:port bound to device. */
static int
eg_bound_socket(int type, const char *ip, uint16_t port, const char *device)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd;

	if (it_sockaddr(ip, port, &ss, &len) < 0)
		return -1;
	fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, strlen(device)) < 0 ||
		bind(fd, (struct sockaddr *)&ss, len) < 0 ||
		(type == SOCK_STREAM && listen(fd, 64) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
eg_format_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	const void *a = ss->ss_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)(const void *)ss)->sin_addr;

	if (inet_ntop(ss->ss_family, a, out, (socklen_t)cap) == NULL)
		snprintf(out, cap, "?");
}

/* One connection: "DEVICE SOURCE\n", then an echo until EOF. */
static void __attribute__((noreturn))
eg_serve_one(int fd, const char *dev, const struct sockaddr_storage *peer)
{
	char line[EG_LINE], ip[INET6_ADDRSTRLEN];
	uint8_t buf[4096];
	ssize_t n;

	eg_format_peer(peer, ip, sizeof(ip));
	n = snprintf(line, sizeof(line), "%s %s\n", dev, ip);
	if (write(fd, line, (size_t)n) != n)
		_exit(1);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			break;
	_exit(0);
}

/* TCP on EG_TPORT of every address of T, through t1 and through t2, for
 * IPv4 and IPv6: who took the connection says where it came in. */
static pid_t
eg_start_tcp_target(void)
{
	static const char *const devs[4] = { "t1", "t2", "t1", "t2" };
	int fds[4];
	pid_t pid;

	for (int i = 0; i < 4; i++)
		if ((fds[i] = eg_bound_socket(SOCK_STREAM, i < 2 ? "0.0.0.0" : "::", EG_TPORT,
			     devs[i])) < 0)
			return -1;
	pid = eg_fork_child();
	if (pid == 0) {
		struct pollfd p[4];
		for (int i = 0; i < 4; i++)
			p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		for (;;) {
			if (poll(p, 4, -1) < 0 && errno != EINTR)
				_exit(1);
			for (int i = 0; i < 4; i++) {
				struct sockaddr_storage peer;
				socklen_t len = sizeof(peer);
				int c;
				if (!(p[i].revents & POLLIN) ||
					(c = accept4(fds[i], (struct sockaddr *)&peer, &len,
						 SOCK_CLOEXEC)) < 0)
					continue;
				if (eg_fork_child() == 0)
					eg_serve_one(c, devs[i], &peer);
				close(c);
				while (waitpid(-1, NULL, WNOHANG) > 0)
					;
			}
		}
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	return pid;
}

/* UDP on EG_UPORT through t1 and t2: each datagram is answered with
 * "DEVICE SOURCE". */
static pid_t
eg_start_udp_target(void)
{
	static const char *const devs[2] = { "t1", "t2" };
	int fds[2];
	pid_t pid;

	for (int i = 0; i < 2; i++)
		if ((fds[i] = eg_bound_socket(SOCK_DGRAM, "0.0.0.0", EG_UPORT, devs[i])) < 0)
			return -1;
	pid = eg_fork_child();
	if (pid == 0) {
		struct pollfd p[2] = { { .fd = fds[0], .events = POLLIN },
			{ .fd = fds[1], .events = POLLIN } };
		for (;;) {
			if (poll(p, 2, -1) < 0 && errno != EINTR)
				_exit(1);
			for (int i = 0; i < 2; i++) {
				struct sockaddr_storage peer;
				socklen_t len = sizeof(peer);
				char buf[512], line[EG_LINE], ip[INET6_ADDRSTRLEN];
				int n;
				if (!(p[i].revents & POLLIN) ||
					recvfrom(fds[i], buf, sizeof(buf), 0,
						(struct sockaddr *)&peer, &len) < 0)
					continue;
				eg_format_peer(&peer, ip, sizeof(ip));
				n = snprintf(line, sizeof(line), "%s %s", devs[i], ip);
				(void)sendto(fds[i], line, (size_t)n, 0, (struct sockaddr *)&peer,
					len);
			}
		}
	}
	close(fds[0]);
	close(fds[1]);
	return pid;
}

/* P: the daemon's side. e1, e2 to T; T's addresses through e1 first; a
 * prefix routed to P's lo (AnyIP) for the sources drawn from it; and two
 * veths into nothing (a neighbour that does not exist) as black holes. */
static bool
eg_build_p(void)
{
	char a[128], b[128];
	const char *cmds[] = {
		"link set lo up",
		"link add e1 type veth peer name t1",
		"link add e2 type veth peer name t2",
		a,
		b,
		"addr add 10.91.1.1/24 dev e1",
		"-6 addr add fd91:1::1/64 dev e1 nodad",
		"addr add 10.91.2.1/24 dev e2",
		"-6 addr add fd91:2::1/64 dev e2 nodad",
		"link set e1 up",
		"link set e2 up",
		"route add 10.91.9.0/24 via 10.91.1.2 dev e1 metric 100",
		"route add 10.91.9.0/24 via 10.91.2.2 dev e2 metric 200",
		"-6 route add fd91:9::/64 via fd91:1::2 dev e1 metric 100",
		"-6 route add fd91:9::/64 via fd91:2::2 dev e2 metric 200",
		"route add local 10.91.50.0/24 dev lo",
		"-6 route add local fd91:50::/64 dev lo",
		"link add b4 type veth peer name b4p",
		"link add b6 type veth peer name b6p",
		"link set b4 addrgenmode none",
		"link set b4p addrgenmode none",
		"link set b6 addrgenmode none",
		"link set b6p addrgenmode none",
		"link set b4 up",
		"link set b4p up",
		"link set b6 up",
		"link set b6p up",
		"neigh add 10.91.66.1 lladdr 02:00:00:00:66:04 dev b4 nud permanent",
		"route add 10.91.66.0/24 via 10.91.66.1 dev b4 onlink",
		"-6 neigh add fe80::66 lladdr 02:00:00:00:66:06 dev b6 nud permanent",
		"-6 route add fd91:66::/64 via fe80::66 dev b6",
	};

	snprintf(a, sizeof(a), "link set t1 netns %d", (int)eg.anchor);
	snprintf(b, sizeof(b), "link set t2 netns %d", (int)eg.anchor);
	return eg_ip_all(cmds, sizeof(cmds) / sizeof(cmds[0]));
}

/* T: the far side's addresses, its way back to the prefix, its servers. */
static bool
eg_build_t(void)
{
	static const char *const cmds[] = {
		"addr add 10.91.9.9/32 dev lo",
		"addr add 10.91.9.53/32 dev lo",
		"addr add 10.91.9.54/32 dev lo",
		"-6 addr add fd91:9::9/128 dev lo",
		"addr add 10.91.1.2/24 dev t1",
		"-6 addr add fd91:1::2/64 dev t1 nodad",
		"addr add 10.91.2.2/24 dev t2",
		"-6 addr add fd91:2::2/64 dev t2 nodad",
		"link set t1 up",
		"link set t2 up",
		"route add 10.91.50.0/24 via 10.91.1.1 dev t1",
		"-6 route add fd91:50::/64 via fd91:1::1 dev t1",
	};

	if (!eg_ip_all(cmds, sizeof(cmds) / sizeof(cmds[0])))
		return false;
	eg.tcp_target = eg_start_tcp_target();
	eg.udp_target = eg_start_udp_target();
	if (eg.tcp_target <= 0 || eg.udp_target <= 0)
		return false;
	return it_dns_start_at(&eg.dns_t2, "10.91.9.53", "t2") == 0 &&
		it_dns_start_at(&eg.dns_any, "10.91.9.54", NULL) == 0;
}

static void
eg_kill(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

static int
eg_ns_teardown(void **state)
{
	if (eg_daemon_up) {
		(void)it_daemon_stop(&eg_daemon);
		eg_daemon_up = false;
	}
	it_dns_stop(&eg.dns_t2);
	it_dns_stop(&eg.dns_any);
	eg_kill(&eg.tcp_target);
	eg_kill(&eg.udp_target);
	eg_kill(&eg.anchor);
	if (eg.moved && setns(eg.orig, CLONE_NEWNET) < 0) {
		fprintf(stderr, "cannot return to the runner's network namespace: %s\n",
			strerror(errno));
		it_harness_failures++;
	}
	for (int *fd = &eg.orig; fd <= &eg.p; fd++) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	eg.ready = eg.moved = false;
	return 0;
}

static int
eg_ns_setup(void **state)
{
	memset(&eg, 0, sizeof(eg));
	eg.orig = eg.t = eg.p = -1;
	eg.dns_t2.ctl = eg.dns_any.ctl = -1;
	eg.why = "ip(8) is not installed (package iproute2)";
	if (!it_find_program("ip", eg.ip_path, sizeof(eg.ip_path))) {
		/* A user's PATH may lack the sbin directories. */
		snprintf(eg.ip_path, sizeof(eg.ip_path), "%s",
			access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip");
		if (access(eg.ip_path, X_OK) != 0)
			return 0;
	}
	eg.orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	eg.why = "no network namespaces here (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)";
	if (eg.orig < 0 || (eg.t = eg_new_ns()) < 0) {
		eg_ns_teardown(state);
		return 0;
	}
	eg.why = "could not build the test network";
	if (eg_ip("link set lo up") != 0 || (eg.anchor = eg_fork_child()) < 0)
		goto fail;
	if (eg.anchor == 0) {
		for (;;)
			pause();
	}
	if (!eg_enter(eg.orig) || (eg.p = eg_new_ns()) < 0 || !eg_build_p() || !eg_enter(eg.t) ||
		!eg_build_t() || !eg_enter(eg.p))
		goto fail;
	eg.ready = true;
	return 0;
fail:
	/* Namespaces but no veth pairs (some containers): the tests skip,
	 * saying why. */
	fprintf(stderr, "[   INFO   ] %s\n", eg.why);
	eg_ns_teardown(state);
	return 0;
}

static void
eg_require_ns(void)
{
	if (!eg.ready) {
		print_message("[   SKIP   ] %s\n", eg.why);
		skip();
	}
}

/* ---- the daemon and sessions ---------------------------------------------------- */

static void eg_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Starts the test's daemon with these config lines (printf format). */
static void
eg_start(const char *fmt, ...)
{
	char text[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (it_daemon_start(&eg_daemon, text) != 0)
		fail_msg("the daemon did not start with:\n%s", text);
	eg_daemon_up = true;
}

static void
eg_stop(void)
{
	if (!eg_daemon_up)
		return;
	eg_daemon_up = false;
	if (it_daemon_stop(&eg_daemon) != 0)
		fail_msg("the daemon did not exit cleanly");
}

static struct it_daemon eg_parent; /* a second socks5d playing a parent */
static bool eg_parent_up;

static int
eg_test_teardown(void **state)
{
	if (eg_daemon_up) {
		eg_daemon_up = false;
		(void)it_daemon_stop(&eg_daemon);
	}
	if (eg_parent_up) {
		eg_parent_up = false;
		(void)it_daemon_stop(&eg_parent);
	}
	it_close_leftovers();
	return 0;
}

/* A greeted connection to the daemon (user NULL: no authentication; the
 * password is always "pw"). */
static int
eg_greet(const char *user)
{
	struct it_fixture fx;

	memset(&fx, 0, sizeof(fx));
	fx.d = eg_daemon;
	fx.user = user;
	fx.pass = "pw";
	fx.started = true;
	return it_greet(&fx, AF_INET);
}

/* Sends a request for cmd to ip:port (ip NULL: the domain name) and reads
 * the reply. */
static void
eg_request(int fd, uint8_t cmd, const char *ip, const char *name, uint16_t port, struct it_reply *r,
	int timeout_ms)
{
	uint8_t req[4 + 1 + 255 + 2] = { 0x05, cmd, 0x00 };
	size_t n = 3;

	if (ip != NULL) {
		struct sockaddr_storage ss;
		socklen_t len;
		if (it_sockaddr(ip, port, &ss, &len) < 0)
			fail_msg("bad address %s", ip);
		if (ss.ss_family == AF_INET6) {
			req[n++] = 0x04;
			memcpy(req + n, &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr, 16);
			n += 16;
		} else {
			req[n++] = 0x01;
			memcpy(req + n, &((struct sockaddr_in *)(void *)&ss)->sin_addr, 4);
			n += 4;
		}
	} else {
		req[n++] = 0x03;
		req[n++] = (uint8_t)strlen(name);
		memcpy(req + n, name, strlen(name));
		n += strlen(name);
	}
	req[n++] = (uint8_t)(port >> 8);
	req[n++] = (uint8_t)port;
	it_send_bytes(fd, req, n);
	it_expect_reply(fd, r, timeout_ms);
}

/* One line from the target (up to its newline). */
static void
eg_read_line(int fd, char *line, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		if (it_recv_exact(fd, line + n, 1, IT_IO_TIMEOUT_MS) != 1)
			fail_msg("the target's line ended after \"%.*s\": %s", (int)n, line,
				strerror(errno));
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
}

/* CONNECTs as user to ip (or name) at the target's port and returns what
 * the target saw: "DEVICE SOURCE". */
static void
eg_connect_line(const char *user, const char *ip, const char *name, char *line, size_t cap)
{
	struct it_reply r;
	int fd = eg_greet(user);

	eg_request(fd, 0x01, ip, name, EG_TPORT, &r, 15000);
	if (r.rep != 0x00)
		fail_msg("CONNECT %s as %s: REP %02x", ip ? ip : name, user ? user : "-", r.rep);
	eg_read_line(fd, line, cap);
	it_expect_echo(fd, 4096, 0x1234);
	it_close(fd);
}

static void
eg_expect_line(const char *user, const char *ip, const char *want)
{
	char line[EG_LINE];

	eg_connect_line(user, ip, NULL, line, sizeof(line));
	if (strcmp(line, want) != 0)
		fail_msg("CONNECT %s as %s: the target saw \"%s\", want \"%s\"", ip,
			user ? user : "-", line, want);
}

/* The source part of a target's line, checked to be in the prefix (the
 * text before the host part). */
static void
eg_expect_source_in(const char *line, const char *dev, const char *prefix, char *src, size_t cap)
{
	size_t dl = strlen(dev);

	if (strncmp(line, dev, dl) != 0 || line[dl] != ' ' ||
		strncmp(line + dl + 1, prefix, strlen(prefix)) != 0)
		fail_msg("the target saw \"%s\", want %s and a source in %s...", line, dev, prefix);
	snprintf(src, cap, "%s", line + dl + 1);
}

/* ---- interfaces ------------------------------------------------------------------- */

static void
test_egress_routing_table_leaves_through_e1_by_default(void **state)
{
	eg_require_ns();
	eg_start("auth none\n");
	eg_expect_line(NULL, "10.91.9.9", "t1 10.91.1.1");
	eg_expect_line(NULL, "fd91:9::9", "t1 fd91:1::1");
	eg_stop();
}

static void
test_egress_interface_moves_connect_to_e2(void **state)
{
	eg_require_ns();
	eg_start("auth none\nexternal-interface e2\n");
	eg_expect_line(NULL, "10.91.9.9", "t2 10.91.2.1");
	eg_expect_line(NULL, "fd91:9::9", "t2 fd91:2::1");
	eg_stop();
}

static void
test_egress_interface_per_rule_and_per_user(void **state)
{
	eg_require_ns();
	eg_start("auth password\nuser alice pw\nuser bob pw\n"
		 "user carol pw external-interface e2\n"
		 "rule allow user bob to 10.91.9.0/24 external-interface e2\n"
		 "rule allow all\n");
	eg_expect_line("alice", "10.91.9.9", "t1 10.91.1.1");
	eg_expect_line("bob", "10.91.9.9", "t2 10.91.2.1");
	/* Bob's rule names IPv4 networks only: his IPv6 follows the table. */
	eg_expect_line("bob", "fd91:9::9", "t1 fd91:1::1");
	eg_expect_line("carol", "10.91.9.9", "t2 10.91.2.1");
	eg_expect_line("carol", "fd91:9::9", "t2 fd91:2::1");
	eg_stop();
}

static void
eg_serve_name(struct it_dns *dns, const char *name, bool truncate)
{
	struct it_dns_rule r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.has_a = true;
	memcpy(r.a, (const uint8_t[]){ 10, 91, 9, 9 }, 4);
	r.truncate_udp = truncate;
	if (it_dns_set(dns, &r) < 0)
		fail_msg("fake DNS: cannot script %s", name);
}

static void
test_egress_dns_queries_follow_the_global_interface(void **state)
{
	struct it_dns_counts c;
	char line[EG_LINE];
	struct it_reply r;
	int fd;

	eg_require_ns();
	eg_serve_name(&eg.dns_t2, "udp.egress.test", false);
	eg_serve_name(&eg.dns_t2, "tcp.egress.test", true);
	eg_serve_name(&eg.dns_t2, "rule.egress.test", false);
	/* The nameserver answers through t2 only: found through e2, over UDP
	 * and (truncated) over TCP. */
	eg_start("auth none\nexternal-interface e2\nnameserver 10.91.9.53:%u\n"
		 "timeout dns 1\ndns-attempts 1\n",
		eg.dns_t2.port);
	eg_connect_line(NULL, NULL, "udp.egress.test", line, sizeof(line));
	assert_string_equal(line, "t2 10.91.2.1");
	eg_connect_line(NULL, NULL, "tcp.egress.test", line, sizeof(line));
	assert_string_equal(line, "t2 10.91.2.1");
	assert_int_equal(it_dns_counts(&eg.dns_t2, "tcp.egress.test", &c), 0);
	assert_true(c.udp_a >= 1 && c.tcp_a >= 1);
	eg_stop();
	/* A rule's interface moves the connection, not the resolver (it
	 * serves every session): the queries take e1 and get no answer. */
	eg_start("auth none\nrule allow external-interface e2\nnameserver 10.91.9.53:%u\n"
		 "timeout dns 1\ndns-attempts 1\n",
		eg.dns_t2.port);
	fd = eg_greet(NULL);
	eg_request(fd, 0x01, NULL, "rule.egress.test", EG_TPORT, &r, 8000);
	assert_int_equal(r.rep, 0x04);
	it_close(fd);
	assert_int_equal(it_dns_counts(&eg.dns_t2, "rule.egress.test", &c), 0);
	assert_int_equal(c.udp_a, 0);
	eg_stop();
}

/* A UDP ASSOCIATE as user; one datagram to the target's UDP port. Returns
 * the answer: "DEVICE SOURCE" as the target saw it. */
static void
eg_udp_line(const char *user, char *line, size_t cap)
{
	uint8_t dgram[64] = { 0, 0, 0, 0x01, 10, 91, 9, 9, EG_UPORT >> 8, EG_UPORT & 0xff, 'h',
		'i' },
		back[256];
	struct it_reply r;
	char relay[INET6_ADDRSTRLEN];
	int fd, u;
	long n;

	fd = eg_greet(user);
	eg_request(fd, 0x03, "0.0.0.0", NULL, 0, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	assert_int_equal(r.atyp, 0x01);
	inet_ntop(AF_INET, r.addr, relay, sizeof(relay));
	u = it_udp_socket("127.0.0.1", 0);
	assert_true(u >= 0);
	assert_int_equal(it_udp_send(u, relay, r.port, dgram, 12), 0);
	n = it_udp_recv(u, back, sizeof(back) - 1, IT_IO_TIMEOUT_MS);
	if (n < 10)
		fail_msg("no answer through the UDP relay as %s: %s", user ? user : "-",
			strerror(errno));
	back[n] = '\0';
	snprintf(line, cap, "%.*s", (int)(n - 10), (char *)back + 10);
	it_close(u);
	it_close(fd);
}

static void
test_egress_udp_associate_leaves_through_interface(void **state)
{
	char line[EG_LINE];

	eg_require_ns();
	eg_start("auth none\nexternal-interface e2\n");
	eg_udp_line(NULL, line, sizeof(line));
	assert_string_equal(line, "t2 10.91.2.1");
	eg_stop();
	/* Per user and per rule: the relay sockets of that session only. */
	eg_start("auth password\nuser alice pw\nuser bob pw\n"
		 "user carol pw external-interface e2\n"
		 "rule allow user bob cmd udp external-interface e2\n"
		 "rule allow all\n");
	eg_udp_line("alice", line, sizeof(line));
	assert_string_equal(line, "t1 10.91.1.1");
	eg_udp_line("bob", line, sizeof(line));
	assert_string_equal(line, "t2 10.91.2.1");
	eg_udp_line("carol", line, sizeof(line));
	assert_string_equal(line, "t2 10.91.2.1");
	eg_stop();
}

/* ---- source prefixes ---------------------------------------------------------------- */

static void
test_egress_random_prefix_gives_each_session_an_address_of_it(void **state)
{
	char line[EG_LINE], first[64] = "", src[64];
	bool differ = false;

	eg_require_ns();
	eg_start("auth none\nexternal 10.91.50.0/24 random\nexternal fd91:50::/64 random\n");
	for (int i = 0; i < 6; i++) {
		eg_connect_line(NULL, "10.91.9.9", NULL, line, sizeof(line));
		eg_expect_source_in(line, "t1", "10.91.50.", src, sizeof(src));
		assert_string_not_equal(src, "10.91.50.0");
		assert_string_not_equal(src, "10.91.50.255");
		differ = differ || (first[0] && strcmp(first, src) != 0);
		snprintf(first, sizeof(first), "%s", src);
	}
	/* Six draws from 254 addresses are not all the same. */
	assert_true(differ);
	eg_connect_line(NULL, "fd91:9::9", NULL, line, sizeof(line));
	eg_expect_source_in(line, "t1", "fd91:50::", src, sizeof(src));
	eg_stop();
}

static void
test_egress_hash_user_keeps_each_user_one_address(void **state)
{
	static const char conf[] = "auth password\nuser alice pw\nuser bob pw\n"
				   "external fd91:50::/64 hash-user\n";
	char line[EG_LINE], a1[64], a2[64], b1[64], a3[64];

	eg_require_ns();
	eg_start("%s", conf);
	eg_connect_line("alice", "fd91:9::9", NULL, line, sizeof(line));
	eg_expect_source_in(line, "t1", "fd91:50::", a1, sizeof(a1));
	eg_connect_line("alice", "fd91:9::9", NULL, line, sizeof(line));
	eg_expect_source_in(line, "t1", "fd91:50::", a2, sizeof(a2));
	eg_connect_line("bob", "fd91:9::9", NULL, line, sizeof(line));
	eg_expect_source_in(line, "t1", "fd91:50::", b1, sizeof(b1));
	assert_string_equal(a1, a2);
	assert_string_not_equal(a1, b1);
	eg_stop();
	if (access("/etc/machine-id", R_OK) != 0) {
		print_message("[   INFO   ] no /etc/machine-id: not checked across a restart\n");
		return;
	}
	/* The key comes from the machine: the same address after a restart. */
	eg_start("%s", conf);
	eg_connect_line("alice", "fd91:9::9", NULL, line, sizeof(line));
	eg_expect_source_in(line, "t1", "fd91:50::", a3, sizeof(a3));
	assert_string_equal(a1, a3);
	eg_stop();
}

/* BIND listens on an address of the prefix (FREEBIND), which the far side
 * reaches through the AnyIP route. */
static void
test_egress_bind_listens_on_an_address_of_the_prefix(void **state)
{
	struct it_reply r1, r2;
	char ip[INET_ADDRSTRLEN];
	int fd, peer;

	eg_require_ns();
	eg_start("auth none\nexternal 10.91.50.0/24 random\n");
	fd = eg_greet(NULL);
	eg_request(fd, 0x02, "10.91.1.2", NULL, 0, &r1, IT_IO_TIMEOUT_MS);
	assert_int_equal(r1.rep, 0x00);
	assert_int_equal(r1.atyp, 0x01);
	inet_ntop(AF_INET, r1.addr, ip, sizeof(ip));
	if (strncmp(ip, "10.91.50.", 9) != 0)
		fail_msg("BIND listens on %s, not in 10.91.50.0/24", ip);
	/* The peer is made in T (a socket keeps the namespace it was made in). */
	assert_true(eg_enter(eg.t));
	peer = it_connect_addr(ip, r1.port, "10.91.1.2");
	assert_true(eg_enter(eg.p));
	if (peer < 0)
		fail_msg("the far side cannot reach the BIND listener %s:%u: %s", ip, r1.port,
			strerror(errno));
	it_expect_reply(fd, &r2, IT_IO_TIMEOUT_MS);
	assert_int_equal(r2.rep, 0x00);
	it_send_bytes(peer, "ping", 4);
	it_expect_bytes(fd, "ping", 4);
	it_close(peer);
	it_close(fd);
	eg_stop();
}

/* ---- Happy Eyeballs ------------------------------------------------------------------ */

/* name: AAAA (a black hole, or aaaa) and A (a4). */
static void
eg_serve_pair(const char *name, const uint8_t aaaa[16], const uint8_t a4[4])
{
	struct it_dns_rule r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.has_a = true;
	memcpy(r.a, a4, 4);
	r.has_aaaa = true;
	memcpy(r.aaaa, aaaa, 16);
	if (it_dns_set(&eg.dns_any, &r) < 0)
		fail_msg("fake DNS: cannot script %s", name);
}

static const uint8_t eg_hole6[16] = { 0xfd, 0x91, 0, 0x66, [15] = 0x66 };
static const uint8_t eg_hole4[4] = { 10, 91, 66, 66 };
static const uint8_t eg_target4[4] = { 10, 91, 9, 9 };

/* Connects to name at the target's port; the reply's time in *ms. */
static uint8_t
eg_timed_connect(const char *name, char *line, size_t cap, uint64_t *ms)
{
	struct it_reply r;
	uint64_t t0;
	int fd = eg_greet(NULL);

	t0 = it_now_ms();
	eg_request(fd, 0x01, NULL, name, EG_TPORT, &r, 20000);
	*ms = it_now_ms() - t0;
	if (r.rep == 0x00)
		eg_read_line(fd, line, cap);
	it_close(fd);
	return r.rep;
}

static void
test_egress_happy_eyeballs_ipv6_blackhole_falls_back_to_ipv4(void **state)
{
	char line[EG_LINE];
	uint64_t ms;

	eg_require_ns();
	eg_serve_pair("he.egress.test", eg_hole6, eg_target4);
	/* No resolve-prefer: Happy Eyeballs starts with IPv6 (RFC 8305 §4),
	 * though the resolver lists the IPv4 address first. */
	eg_start("auth none\nnameserver 10.91.9.54:%u\ntimeout connect 10\n", eg.dns_any.port);
	assert_int_equal(eg_timed_connect("he.egress.test", line, sizeof(line), &ms), 0x00);
	print_message("[   INFO   ] IPv6 black-holed: connected over IPv4 after %llu ms\n",
		(unsigned long long)ms);
	assert_string_equal(line, "t1 10.91.1.1");
	/* Not before the delay (250 ms); long before the 10 s timeout (the
	 * old one-at-a-time dial waited for half of it). */
	assert_true(ms >= 240);
	assert_true(ms < 4000);
	eg_stop();
	/* resolve-prefer ipv4: IPv4 starts and wins at once. */
	eg_start("auth none\nnameserver 10.91.9.54:%u\nresolve-prefer ipv4\n"
		 "timeout connect 10\n",
		eg.dns_any.port);
	assert_int_equal(eg_timed_connect("he.egress.test", line, sizeof(line), &ms), 0x00);
	assert_string_equal(line, "t1 10.91.1.1");
	assert_true(ms < 240);
	eg_stop();
}

static void
test_egress_happy_eyeballs_off_waits_for_the_first_share(void **state)
{
	char line[EG_LINE];
	uint64_t ms;

	eg_require_ns();
	eg_serve_pair("off.egress.test", eg_hole6, eg_target4);
	eg_start("auth none\nnameserver 10.91.9.54:%u\nresolve-prefer ipv6\n"
		 "timeout connect 4\nhappy-eyeballs off\n",
		eg.dns_any.port);
	assert_int_equal(eg_timed_connect("off.egress.test", line, sizeof(line), &ms), 0x00);
	print_message("[   INFO   ] happy-eyeballs off: connected over IPv4 after %llu ms\n",
		(unsigned long long)ms);
	assert_string_equal(line, "t1 10.91.1.1");
	/* The IPv6 address had its share, half of the 4 s, to itself. */
	assert_true(ms >= 1900);
	eg_stop();
}

/* Transmitted packets of device dev in the runner's namespace (P). */
static unsigned long long
eg_tx_packets(const char *dev)
{
	FILE *f = fopen("/proc/net/dev", "r");
	char line[512];
	unsigned long long v[16] = { 0 };

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *name = line;
		if (!colon)
			continue;
		*colon = '\0';
		while (*name == ' ')
			name++;
		if (strcmp(name, dev) != 0)
			continue;
		if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
			    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) != 10)
			fail_msg("cannot read %s's counters", dev);
		fclose(f);
		return v[9];
	}
	fclose(f);
	fail_msg("no device %s", dev);
	return 0;
}

static void
test_egress_happy_eyeballs_tries_every_address(void **state)
{
	unsigned long long b6, b4;
	char line[EG_LINE];
	uint64_t ms;

	eg_require_ns();
	eg_serve_pair("dead.egress.test", eg_hole6, eg_hole4);
	eg_start("auth none\nnameserver 10.91.9.54:%u\nresolve-prefer ipv6\n"
		 "timeout connect 2\n",
		eg.dns_any.port);
	b6 = eg_tx_packets("b6");
	b4 = eg_tx_packets("b4");
	/* Nothing answers: host unreachable at the connect timeout... */
	assert_int_equal(eg_timed_connect("dead.egress.test", line, sizeof(line), &ms), 0x04);
	assert_true(ms >= 1900);
	/* ...and SYNs went to both addresses. */
	assert_true(eg_tx_packets("b6") > b6);
	assert_true(eg_tx_packets("b4") > b4);
	eg_stop();
}

/* ---- socket options, read from the daemon's own sockets -------------------------------- */

static int eg_pidfd = -1;

static bool
eg_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	return a->ss_family == b->ss_family &&
		memcmp(a, b,
			b->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in)) == 0;
}

/* The daemon's TCP socket whose peer is peer and, unless local is NULL,
 * whose own address is local, duplicated into this process with
 * pidfd_getfd; -1 when there is none. Sessions to one target share its
 * peer address: only the local address (the reply's BND) tells the
 * current one from an earlier one the daemon has not closed yet. */
static int
eg_daemon_socket(const struct sockaddr_storage *peer, const struct sockaddr_storage *local)
{
	char dir[64];
	struct dirent *e;
	DIR *d;
	int found = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)eg_daemon.pid);
	d = opendir(dir);
	assert_non_null(d);
	while (found < 0 && (e = readdir(d)) != NULL) {
		struct sockaddr_storage got, own;
		socklen_t len = sizeof(got), olen = sizeof(own);
		int fd, type = 0;
		socklen_t tl = sizeof(type);

		if (e->d_name[0] == '.')
			continue;
		fd = (int)syscall(SYS_pidfd_getfd, eg_pidfd, atoi(e->d_name), 0);
		if (fd < 0)
			continue;
		memset(&got, 0, sizeof(got));
		memset(&own, 0, sizeof(own));
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM &&
			getpeername(fd, (struct sockaddr *)&got, &len) == 0 &&
			eg_same_addr(&got, peer) &&
			(!local ||
				(getsockname(fd, (struct sockaddr *)&own, &olen) == 0 &&
					eg_same_addr(&own, local))))
			found = fd;
		else
			close(fd);
	}
	closedir(d);
	return found;
}

static int
eg_opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) < 0)
		fail_msg("getsockopt: %s", strerror(errno));
	return v;
}

struct eg_side {
	int keepalive, idle, interval, count, user_timeout, mark, tos;
	char dev[IFNAMSIZ];
};

static struct eg_side
eg_read_side(int fd)
{
	struct eg_side s;
	socklen_t len = sizeof(s.dev);

	memset(&s, 0, sizeof(s));
	s.keepalive = eg_opt(fd, SOL_SOCKET, SO_KEEPALIVE);
	s.idle = eg_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE);
	s.interval = eg_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL);
	s.count = eg_opt(fd, IPPROTO_TCP, TCP_KEEPCNT);
	s.user_timeout = eg_opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
	s.mark = eg_opt(fd, SOL_SOCKET, SO_MARK);
	s.tos = eg_opt(fd, IPPROTO_IP, IP_TOS);
	if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, s.dev, &len) < 0)
		s.dev[0] = '\0';
	return s;
}

/* A session as user to the loopback echo target; both of the daemon's
 * sockets of it, read. */
static void
eg_session_sides(const char *user, struct eg_side *client, struct eg_side *target)
{
	struct sockaddr_storage me, to, bnd;
	socklen_t len = sizeof(me);
	char bnd_ip[INET_ADDRSTRLEN];
	struct it_reply r;
	int fd = eg_greet(user), cfd, tfd;

	eg_request(fd, 0x01, "127.0.0.1", NULL, it_tg.echo4.port, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	assert_int_equal(r.atyp, 0x01);
	assert_non_null(inet_ntop(AF_INET, r.addr, bnd_ip, sizeof(bnd_ip)));
	it_expect_echo(fd, 1024, 0x77);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
	assert_int_equal(it_sockaddr("127.0.0.1", it_tg.echo4.port, &to, &len), 0);
	assert_int_equal(it_sockaddr(bnd_ip, r.port, &bnd, &len), 0);
	cfd = eg_daemon_socket(&me, NULL);
	tfd = eg_daemon_socket(&to, &bnd);
	if (cfd < 0 || tfd < 0)
		fail_msg("the daemon's sockets of the session were not found (client %d, "
			 "target %d)",
			cfd, tfd);
	*client = eg_read_side(cfd);
	*target = eg_read_side(tfd);
	close(cfd);
	close(tfd);
	it_close(fd);
}

static void eg_start_with_pidfd_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Starts the daemon with these config lines (printf format) and opens a
 * pidfd to it; skips without pidfd_getfd. */
static void
eg_start_with_pidfd_fmt(const char *fmt, ...)
{
	char conf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(conf, sizeof(conf), fmt, ap);
	va_end(ap);
	eg_start("%s", conf);
	if (eg_pidfd >= 0)
		close(eg_pidfd);
	eg_pidfd = (int)syscall(SYS_pidfd_open, eg_daemon.pid, 0);
	if (eg_pidfd < 0) {
		print_message("[   SKIP   ] pidfd_open: %s\n", strerror(errno));
		skip();
	}
	{
		int probe = (int)syscall(SYS_pidfd_getfd, eg_pidfd, 0, 0);
		if (probe < 0) {
			print_message("[   SKIP   ] pidfd_getfd: %s\n", strerror(errno));
			skip();
		}
		close(probe);
	}
}

static void
eg_start_with_pidfd(const char *conf)
{
	eg_start_with_pidfd_fmt("%s", conf);
}

static void
eg_assert_keepalive(const struct eg_side *s, const char *side, int idle, int interval, int count)
{
	if (s->keepalive != 1 || s->idle != idle || s->interval != interval || s->count != count)
		fail_msg("%s side: keepalive %d %d/%d/%d, want 1 %d/%d/%d", side, s->keepalive,
			s->idle, s->interval, s->count, idle, interval, count);
}

static void
test_egress_keepalive_is_on_by_default_on_both_sides(void **state)
{
	struct eg_side c, t;

	eg_start_with_pidfd("auth none\n");
	eg_session_sides(NULL, &c, &t);
	eg_assert_keepalive(&c, "client", 120, 30, 4);
	eg_assert_keepalive(&t, "target", 120, 30, 4);
	assert_int_equal(c.user_timeout, 0);
	assert_int_equal(t.user_timeout, 0);
	assert_int_equal(t.mark, 0);
	assert_int_equal(t.tos, 0);
	eg_stop();
	eg_start_with_pidfd("auth none\ntcp-keepalive off\n");
	eg_session_sides(NULL, &c, &t);
	assert_int_equal(c.keepalive, 0);
	assert_int_equal(t.keepalive, 0);
	eg_stop();
}

/* Whether this process (and so the daemon it starts) may set SO_MARK
 * (CAP_NET_ADMIN, or CAP_NET_RAW since Linux 5.17); says so when not: the
 * mark is then left out. */
static bool
eg_can_mark(void)
{
	uint32_t mark = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0;

	if (!ok)
		print_message("[   SKIP   ] socket-mark: no CAP_NET_ADMIN here (%s); the "
			      "other options are checked\n",
			strerror(errno));
	if (fd >= 0)
		close(fd);
	return ok;
}

static void
test_egress_every_socket_option_read_back_on_both_sides(void **state)
{
	bool mark = eg_can_mark();
	struct eg_side c, t;

	eg_start_with_pidfd(mark ? "auth none\ntcp-keepalive 61 11 6\ntcp-user-timeout 4321\n"
				   "socket-mark 77\nip-tos 184\nexternal-interface lo\n"
				 : "auth none\ntcp-keepalive 61 11 6\ntcp-user-timeout 4321\n"
				   "ip-tos 184\nexternal-interface lo\n");
	eg_session_sides(NULL, &c, &t);
	eg_assert_keepalive(&c, "client", 61, 11, 6);
	eg_assert_keepalive(&t, "target", 61, 11, 6);
	assert_int_equal(c.user_timeout, 4321);
	assert_int_equal(t.user_timeout, 4321);
	/* Mark, TOS and interface are the outbound side's only. */
	assert_int_equal(t.mark, mark ? 77 : 0);
	assert_int_equal(t.tos, 184);
	assert_string_equal(t.dev, "lo");
	assert_int_equal(c.mark, 0);
	assert_int_equal(c.tos, 0);
	assert_string_equal(c.dev, "");
	eg_stop();
}

static void
test_egress_rule_options_replace_the_global_ones_on_both_sides(void **state)
{
	bool mark = eg_can_mark();
	struct eg_side c, t;

	eg_start_with_pidfd(mark ? "auth password\nuser alice pw\nuser bob pw\n"
				   "tcp-keepalive 61 11 6\nsocket-mark 77\n"
				   "rule allow user bob tcp-keepalive 33 7 2 tcp-user-timeout 999 "
				   "socket-mark 5 ip-tos 32\n"
				   "rule allow all\n"
				 : "auth password\nuser alice pw\nuser bob pw\n"
				   "tcp-keepalive 61 11 6\n"
				   "rule allow user bob tcp-keepalive 33 7 2 tcp-user-timeout 999 "
				   "ip-tos 32\n"
				   "rule allow all\n");
	eg_session_sides("alice", &c, &t);
	eg_assert_keepalive(&c, "alice's client", 61, 11, 6);
	eg_assert_keepalive(&t, "alice's target", 61, 11, 6);
	assert_int_equal(t.mark, mark ? 77 : 0);
	assert_int_equal(t.tos, 0);
	eg_session_sides("bob", &c, &t);
	eg_assert_keepalive(&c, "bob's client", 33, 7, 2);
	eg_assert_keepalive(&t, "bob's target", 33, 7, 2);
	assert_int_equal(c.user_timeout, 999);
	assert_int_equal(t.user_timeout, 999);
	assert_int_equal(t.mark, mark ? 5 : 0);
	assert_int_equal(t.tos, 32);
	eg_stop();
}

/* A rule with `via` and outbound clauses: the connection to the parent
 * leaves as the clauses say (TOS, keepalive), and the client's side gets
 * the rule's keepalive too. The parent is a second socks5d. */
static void
test_egress_rule_options_apply_to_the_connection_to_a_parent(void **state)
{
	struct it_daemon *parent = &eg_parent;
	struct sockaddr_storage me, to;
	socklen_t len = sizeof(me);
	struct eg_side c, t;
	struct it_reply r;
	int fd, cfd, tfd;

	if (it_daemon_start(parent, "auth none\n") != 0)
		fail_msg("the parent did not start");
	eg_parent_up = true;
	eg_start_with_pidfd_fmt(
		"auth none\n"
		"rule allow via socks5://127.0.0.1:%u ip-tos 32 tcp-keepalive 33 7 2\n",
		parent->port);
	fd = eg_greet(NULL);
	eg_request(fd, 0x01, "127.0.0.1", NULL, it_tg.echo4.port, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	it_expect_echo(fd, 1024, 0x55);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
	assert_int_equal(it_sockaddr("127.0.0.1", parent->port, &to, &len), 0);
	/* The daemon is fresh: its one socket to the parent is this session's
	 * (the reply's BND is the parent's own outbound address). */
	cfd = eg_daemon_socket(&me, NULL);
	tfd = eg_daemon_socket(&to, NULL);
	if (cfd < 0 || tfd < 0)
		fail_msg("the daemon's sockets of the session were not found (client %d, "
			 "parent %d)",
			cfd, tfd);
	c = eg_read_side(cfd);
	t = eg_read_side(tfd);
	close(cfd);
	close(tfd);
	it_close(fd);
	eg_assert_keepalive(&c, "client", 33, 7, 2);
	eg_assert_keepalive(&t, "parent", 33, 7, 2);
	assert_int_equal(t.tos, 32);
	assert_int_equal(c.tos, 0);
	eg_stop();
	eg_parent_up = false;
	assert_int_equal(it_daemon_stop(parent), 0);
}

/* The backlog ss(8) reports for the daemon's listener on 127.0.0.1 (the
 * Send-Q of a listening socket), or -1 when ss cannot say. */
static int
eg_listen_backlog(void)
{
	char cmd[256], line[512];
	FILE *f;
	int backlog = -1;

	snprintf(cmd, sizeof(cmd), "ss -ltnH 'sport = :%u' 2>/dev/null", eg_daemon.port);
	if ((f = popen(cmd, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "127.0.0.1:") && sscanf(line, "LISTEN %*d %d", &backlog) != 1)
			backlog = -1;
	pclose(f);
	return backlog;
}

/* How many times needle occurs in the daemon's log. */
static int
eg_log_count(const char *needle)
{
	FILE *f = fopen(eg_daemon.log, "r");
	char line[1024];
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Rewrites the daemon's config as lines plus its 127.0.0.1 listener with
 * listen_opts, sends SIGHUP and waits for the reload to be logged. */
static void
eg_reload(const char *lines, const char *listen_opts)
{
	int before = eg_log_count("reloaded ");
	uint64_t t0 = it_now_ms();
	FILE *f = fopen(eg_daemon.conf, "w");

	assert_non_null(f);
	fprintf(f, "%slisten 127.0.0.1:%u%s\n", lines, eg_daemon.port, listen_opts);
	fclose(f);
	assert_int_equal(kill(eg_daemon.pid, SIGHUP), 0);
	while (eg_log_count("reloaded ") == before) {
		if (it_now_ms() - t0 > 5000)
			fail_msg("no reload logged within 5 s");
		it_sleep_ms(20);
	}
}

/* listen's backlog, set and changed by reloads on the listener they keep
 * (ss shows a listener's backlog as its Send-Q), and the keepalive that
 * clients' sockets inherit from it, changed by a reload too. */
static void
test_egress_backlog_and_keepalive_follow_reloads_on_a_kept_listener(void **state)
{
	struct eg_side c, t;

	eg_start_with_pidfd("auth none\ntcp-keepalive 61 11 6\n");
	eg_reload("auth none\ntcp-keepalive 62 12 7\n", " backlog 7");
	eg_session_sides(NULL, &c, &t);
	eg_assert_keepalive(&c, "client (after the reload)", 62, 12, 7);
	eg_assert_keepalive(&t, "target (after the reload)", 62, 12, 7);
	if (eg_listen_backlog() < 0) {
		print_message("[   INFO   ] ss(8) cannot show the backlog here: not checked\n");
	} else {
		assert_int_equal(eg_listen_backlog(), 7);
		eg_reload("auth none\n", " backlog 9");
		assert_int_equal(eg_listen_backlog(), 9);
	}
	eg_stop();
}

static void
test_egress_check_warns_and_refuses_with_file_and_line(void **state)
{
	char out[2048];

	if (it_is_microsocks())
		skip();
	assert_int_equal(
		it_check_config("auth none\nexternal-interface nosuch-eg0\n", out, sizeof(out)), 0);
	if (!strstr(out,
		    "t.conf:2: external-interface: no interface 'nosuch-eg0' on this host "
		    "now"))
		fail_msg("-t said: %s", out);
	assert_int_equal(
		it_check_config("auth none\nrule allow user x external-interface nosuch-eg1\n", out,
			sizeof(out)),
		0);
	assert_non_null(strstr(out, "t.conf:2: external-interface: no interface 'nosuch-eg1'"));
	assert_int_equal(it_check_config("listen 127.0.0.1:1080 backlog 65535\n", out, sizeof(out)),
		0);
	if (!strstr(out, "t.conf:1: listen: backlog 65535 is above net.core.somaxconn"))
		print_message("[   INFO   ] somaxconn is 65535 or more here: no warning\n");
	assert_int_equal(it_check_config("auth none\n\nexternal 2001:db8::/64 hash-user\n", out,
				 sizeof(out)),
		1);
	assert_non_null(strstr(out, "t.conf:3: external: hash-user gives each user an address"));
	assert_int_equal(it_check_config("run-as nobody\nsocket-mark 1\n", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "t.conf:2: socket-mark: SO_MARK needs CAP_NET_ADMIN"));
	assert_int_equal(it_check_config("ip-tos 1\n", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "t.conf:1: ip-tos: 1 sets the low two bits"));
	assert_int_equal(it_check_config("external 10.0.0.1/32 random\n", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "t.conf:1: external: '10.0.0.1/32' holds one address"));
}

int
it_run_egress_tests(void)
{
	const struct CMUnitTest ns_tests[] = {
#define EG_TEST(f) cmocka_unit_test_teardown(f, eg_test_teardown)
		EG_TEST(test_egress_routing_table_leaves_through_e1_by_default),
		EG_TEST(test_egress_interface_moves_connect_to_e2),
		EG_TEST(test_egress_interface_per_rule_and_per_user),
		EG_TEST(test_egress_dns_queries_follow_the_global_interface),
		EG_TEST(test_egress_udp_associate_leaves_through_interface),
		EG_TEST(test_egress_random_prefix_gives_each_session_an_address_of_it),
		EG_TEST(test_egress_hash_user_keeps_each_user_one_address),
		EG_TEST(test_egress_bind_listens_on_an_address_of_the_prefix),
		EG_TEST(test_egress_happy_eyeballs_ipv6_blackhole_falls_back_to_ipv4),
		EG_TEST(test_egress_happy_eyeballs_off_waits_for_the_first_share),
		EG_TEST(test_egress_happy_eyeballs_tries_every_address),
	};
	const struct CMUnitTest opt_tests[] = {
		EG_TEST(test_egress_keepalive_is_on_by_default_on_both_sides),
		EG_TEST(test_egress_every_socket_option_read_back_on_both_sides),
		EG_TEST(test_egress_rule_options_replace_the_global_ones_on_both_sides),
		EG_TEST(test_egress_rule_options_apply_to_the_connection_to_a_parent),
		EG_TEST(test_egress_backlog_and_keepalive_follow_reloads_on_a_kept_listener),
		EG_TEST(test_egress_check_warns_and_refuses_with_file_and_line),
#undef EG_TEST
	};
	int failed = 0;

	if (it_is_microsocks())
		return 0;
	failed += cmocka_run_group_tests_name("egress (namespaces: interfaces, sources, Happy "
					      "Eyeballs)",
		ns_tests, eg_ns_setup, eg_ns_teardown);
	failed += cmocka_run_group_tests_name("egress (socket options, pidfd_getfd)", opt_tests,
		NULL, NULL);
	if (eg_pidfd >= 0)
		close(eg_pidfd);
	eg_pidfd = -1;
	return failed;
}
