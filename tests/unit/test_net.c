/*
 * test_net: the outbound settings on real sockets (issue 19). Each setting
 * net applies is read back with getsockopt from the socket it went on: an
 * outbound connection (net_connect_start), a BIND listener and the peer it
 * accepts (inherited), a client's socket (the TCP part only), UDP sockets;
 * unset fields leave the kernel's values; a source drawn from a prefix
 * binds although no interface has it (IP_FREEBIND), an address does not;
 * a missing interface fails the connect with ENODEV.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "egress.h"
#include "net.h"

#include "unit_util.h"

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

static int
get_int(int fd, int level, int name)
{
	int v = -12345;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) < 0)
		fail_msg("getsockopt(%d, %d): %s", level, name, strerror(errno));
	return v;
}

/* SO_MARK needs CAP_NET_ADMIN: whether this test may set one. */
static bool
may_mark(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0), m = 1;
	bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

static bool
have_ipv6(void)
{
	union sockaddr_any a = unit_addr("::1", 0);
	int fd = net_udp_socket(&a, 0, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static struct egress
settings(const char *text)
{
	struct egress e;
	char *argv[16], buf[256], err[256];
	int n = 0, i = 0;

	snprintf(buf, sizeof(buf), "%s", text);
	for (char *w = strtok(buf, " "); w; w = strtok(NULL, " "))
		argv[n++] = w;
	argv[n] = NULL;
	egress_init(&e);
	while (i < n) {
		int used = egress_parse_clause(&e, EGRESS_IN_RULE, argv + i, err, sizeof(err));
		if (used <= 0)
			fail_msg("%s: %s", text, err);
		i += used;
	}
	return e;
}

/* A listener on 127.0.0.1 (or ::1) at any port; its address in *a. */
static int
listener(int family, union sockaddr_any *a)
{
	int fd;

	*a = unit_addr(family == AF_INET6 ? "::1" : "127.0.0.1", 0);
	fd = net_listen_tcp(a, 8);
	assert_true(fd >= 0);
	assert_int_equal(net_local_addr(fd, a), 0);
	return fd;
}

static void
assert_tcp_settings(int fd, int idle, int intvl, int cnt, int user_timeout)
{
	assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle);
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), intvl);
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), cnt);
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), user_timeout);
}

static void
check_connect_carries_every_setting(int family)
{
	struct egress e = settings("external-interface lo ip-tos 184 tcp-keepalive 61 11 6 "
				   "tcp-user-timeout 4321");
	union sockaddr_any la;
	int lfd = listener(family, &la), fd;
	char dev[IFNAMSIZ] = "";
	socklen_t len = sizeof(dev);
	bool mark = may_mark();

	if (mark) {
		e.has_mark = true;
		e.mark = 0x5eed;
	}
	fd = net_connect_start(&la, NULL, &e);
	assert_true(fd >= 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &len), 0);
	assert_string_equal(dev, "lo");
	if (mark)
		assert_int_equal(get_int(fd, SOL_SOCKET, SO_MARK), 0x5eed);
	if (family == AF_INET6)
		assert_int_equal(get_int(fd, IPPROTO_IPV6, IPV6_TCLASS), 184);
	else
		assert_int_equal(get_int(fd, IPPROTO_IP, IP_TOS), 184);
	assert_tcp_settings(fd, 61, 11, 6, 4321);
	/* An address source: no FREEBIND. */
	assert_int_equal(get_int(fd, IPPROTO_IP, IP_FREEBIND), 0);
	close(fd);
	close(lfd);
}

static void
test_connect_carries_every_setting_ipv4(void **state)
{
	(void)state;
	check_connect_carries_every_setting(AF_INET);
}

static void
test_connect_carries_every_setting_ipv6(void **state)
{
	(void)state;
	if (!have_ipv6())
		skip();
	check_connect_carries_every_setting(AF_INET6);
}

static void
test_unset_fields_leave_the_kernels_values(void **state)
{
	struct egress e;
	union sockaddr_any la;
	int lfd = listener(AF_INET, &la), plain, fd;

	(void)state;
	egress_init(&e);
	plain = socket(AF_INET, SOCK_STREAM, 0);
	fd = net_connect_start(&la, NULL, &e);
	assert_true(fd >= 0 && plain >= 0);
	assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	assert_int_equal(get_int(fd, IPPROTO_IP, IP_TOS), get_int(plain, IPPROTO_IP, IP_TOS));
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE),
		get_int(plain, IPPROTO_TCP, TCP_KEEPIDLE));
	assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
	assert_int_equal(get_int(fd, SOL_SOCKET, SO_MARK), 0);
	close(fd);
	fd = net_connect_start(&la, NULL, NULL);
	assert_true(fd >= 0);
	assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	close(fd);
	/* keepalive off turns it off. */
	e = settings("tcp-keepalive off");
	fd = net_connect_start(&la, NULL, &e);
	assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	close(fd);
	close(plain);
	close(lfd);
}

/* A BIND listener's settings reach the peer it accepts; the client side
 * gets only the TCP part. */
static void
test_listener_settings_are_inherited_by_the_accepted_peer(void **state)
{
	struct egress e = settings("ip-tos 32 tcp-keepalive 70 20 3 tcp-user-timeout 9000");
	union sockaddr_any a = unit_addr("127.0.0.1", 0), peer;
	int lfd, cfd, afd;

	(void)state;
	lfd = net_listen_tcp_range(&a, 1, 0, 0, &e);
	assert_true(lfd >= 0);
	assert_int_equal(net_local_addr(lfd, &a), 0);
	cfd = net_connect_start(&a, NULL, NULL);
	assert_true(cfd >= 0);
	for (int i = 0; i < 200 && (afd = net_accept(lfd, &peer)) < 0; i++)
		usleep(5000);
	assert_true(afd >= 0);
	assert_tcp_settings(afd, 70, 20, 3, 9000);
	assert_int_equal(get_int(afd, IPPROTO_IP, IP_TOS), 32);
	close(afd);
	close(cfd);
	/* The TCP part alone: a client's socket. */
	e = settings("ip-tos 64 tcp-keepalive 5 6 7 tcp-user-timeout 8 socket-mark 0");
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(net_apply_tcp_egress(cfd, &e), 0);
	assert_tcp_settings(cfd, 5, 6, 7, 8);
	assert_int_equal(get_int(cfd, IPPROTO_IP, IP_TOS), 0);
	close(cfd);
	close(lfd);
}

/* A source from a prefix need not be assigned here: FREEBIND. */
static void
test_drawn_source_binds_with_freebind(void **state)
{
	struct egress drawn = settings("external 198.51.100.0/24 random ip-tos 8");
	struct egress fixed = settings("external 198.51.100.7");
	union sockaddr_any src = unit_addr("198.51.100.7", 0), got;
	union sockaddr_any src6 = unit_addr("2001:db8:77::7", 0);
	struct egress drawn6 = settings("external 2001:db8:77::/64 random");
	int fd;

	(void)state;
	fd = net_udp_socket_egress(&src, &drawn);
	assert_true(fd >= 0);
	assert_int_equal(get_int(fd, IPPROTO_IP, IP_FREEBIND), 1);
	assert_int_equal(get_int(fd, IPPROTO_IP, IP_TOS), 8);
	assert_int_equal(net_local_addr(fd, &got), 0);
	assert_true(addr_ip_equal(&got, &src));
	close(fd);
	errno = 0;
	assert_int_equal(net_udp_socket_egress(&src, &fixed), -1);
	assert_int_equal(errno, EADDRNOTAVAIL);
	if (have_ipv6()) {
		fd = net_udp_socket_egress(&src6, &drawn6);
		assert_true(fd >= 0);
		close(fd);
	}
}

/* An interface that is not there: the connect fails at once. */
static void
test_missing_interface_fails_with_enodev(void **state)
{
	struct egress e = settings("external-interface nosuch-if0");
	union sockaddr_any la;
	int lfd = listener(AF_INET, &la);

	(void)state;
	errno = 0;
	assert_int_equal(net_connect_start(&la, NULL, &e), -1);
	assert_int_equal(errno, ENODEV);
	close(lfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_carries_every_setting_ipv4),
		cmocka_unit_test(test_connect_carries_every_setting_ipv6),
		cmocka_unit_test(test_unset_fields_leave_the_kernels_values),
		cmocka_unit_test(test_listener_settings_are_inherited_by_the_accepted_peer),
		cmocka_unit_test(test_drawn_source_binds_with_freebind),
		cmocka_unit_test(test_missing_interface_fails_with_enodev),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
