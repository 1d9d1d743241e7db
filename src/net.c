/*
 * net: small nonblocking socket helpers sharing one convention: -1 with
 * errno on failure, EINTR retried here. No name lookups ever happen here;
 * addresses are numeric (the resolver turns names into addresses).
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "egress.h"

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78 /* Linux 4.15; older headers lack it */
#endif

/* Closes fd after a failed step, keeping that step's errno for the
 * caller. Returns -1, for `return close_failed(fd);`. */
static int
close_failed(int fd)
{
	int saved = errno;

	close(fd);
	errno = saved;
	return -1;
}

/* Binds fd to a's IP and a port of lo..hi (both 0: any port). At most
 * NET_RANGE_PROBES ports are tried, from a random start, so a range full
 * of sockets costs a bounded number of syscalls inside the loop. */
#define NET_RANGE_PROBES 64
static int
bind_in_range(int fd, const union sockaddr_any *addr, uint16_t lo, uint16_t hi)
{
	union sockaddr_any a = *addr;
	uint32_t span, start = 0;

	if (lo == 0 && hi == 0) {
		addr_set_port(&a, 0);
		return bind(fd, &a.sa, addr_len(&a));
	}
	span = (uint32_t)hi - lo + 1;
	if (getrandom(&start, sizeof(start), GRND_NONBLOCK) < 0)
		start = (uint32_t)getpid();
	errno = EADDRINUSE;
	for (uint32_t i = 0; i < span && i < NET_RANGE_PROBES; i++) {
		addr_set_port(&a, (uint16_t)(lo + (start + i) % span));
		if (bind(fd, &a.sa, addr_len(&a)) == 0)
			return 0;
		if (errno != EADDRINUSE)
			break;
	}
	return -1;
}

int
net_set_nodelay(int fd)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int
set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

int
net_apply_tcp_egress(int fd, const struct egress *e)
{
	if (e->keepalive >= 0 && set_int(fd, SOL_SOCKET, SO_KEEPALIVE, e->keepalive) < 0)
		return -1;
	if (e->keepalive == 1 &&
		(set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, e->keepalive_idle) < 0 ||
			set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, e->keepalive_interval) < 0 ||
			set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, e->keepalive_count) < 0))
		return -1;
	if (e->user_timeout_ms >= 0 &&
		set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, e->user_timeout_ms) < 0)
		return -1;
	return 0;
}

/* IP(V6)_FREEBIND: the source may be an address no interface has (a
 * prefix routed to the host). Kernels before IPV6_FREEBIND took the IPv4
 * option for both families. */
static int
set_freebind(int fd, int family)
{
	if (family == AF_INET6 && set_int(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1) == 0)
		return 0;
	return set_int(fd, IPPROTO_IP, IP_FREEBIND, 1);
}

int
net_apply_egress(int fd, int family, bool tcp, const struct egress *e)
{
	if (e->ifname[0] &&
		setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, e->ifname, strlen(e->ifname)) < 0)
		return -1;
	if (e->has_mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &e->mark, sizeof(e->mark)) < 0)
		return -1;
	if (e->tos >= 0 &&
		(family == AF_INET6 ? set_int(fd, IPPROTO_IPV6, IPV6_TCLASS, e->tos)
				    : set_int(fd, IPPROTO_IP, IP_TOS, e->tos)) < 0)
		return -1;
	if (egress_source_drawn(e, family) && set_freebind(fd, family) < 0)
		return -1;
	return tcp ? net_apply_tcp_egress(fd, e) : 0;
}

static int
listen_tcp(const union sockaddr_any *a, int backlog, bool reuseport, uint16_t lo, uint16_t hi,
	const struct egress *e)
{
	int fd, one = 1;

	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* [::]:1080 must not also claim 0.0.0.0:1080: a separate listen line does. */
	if (a->sa.sa_family == AF_INET6 &&
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (e && net_apply_egress(fd, a->sa.sa_family, true, e) < 0)
		goto fail;
	if ((lo || hi ? bind_in_range(fd, a, lo, hi) : bind(fd, &a->sa, addr_len(a))) < 0)
		goto fail;
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	return close_failed(fd);
}

int
net_listen_tcp(const union sockaddr_any *a, int backlog)
{
	return listen_tcp(a, backlog, false, 0, 0, NULL);
}

int
net_listen_tcp_range(const union sockaddr_any *a, int backlog, uint16_t lo, uint16_t hi,
	const struct egress *e)
{
	union sockaddr_any any_port = *a;

	/* No range: any port, chosen by the kernel. */
	addr_set_port(&any_port, 0);
	return listen_tcp(&any_port, backlog, false, lo, hi, e);
}

int
net_relisten(int fd, int backlog)
{
	return listen(fd, backlog);
}

int
net_listen_tcp_reuseport(const union sockaddr_any *a, int backlog)
{
	return listen_tcp(a, backlog, true, 0, 0, NULL);
}

int
net_accept(int lfd, union sockaddr_any *peer)
{
	socklen_t len = sizeof(*peer);
	int fd;

	do {
		fd = accept4(lfd, &peer->sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	return fd;
}

int
net_connect_start(const union sockaddr_any *to, const union sockaddr_any *from,
	const struct egress *e)
{
	int fd, rc;

	fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (e && net_apply_egress(fd, to->sa.sa_family, true, e) < 0)
		goto fail;
	if (from && from->sa.sa_family == to->sa.sa_family) {
		/* Pick the source address but let connect() choose the port, so
		 * churn does not exhaust the ephemeral range (bind before connect
		 * would reserve a port per 4-tuple-less bind). */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, &from->sa, addr_len(from)) < 0)
			goto fail;
	}
	do {
		rc = connect(fd, &to->sa, addr_len(to));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0 && errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	return close_failed(fd);
}

int
net_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

ssize_t
net_read_some(int fd, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EWOULDBLOCK)
		errno = EAGAIN;
	if (n < 0 && errno != EAGAIN)
		return 0;
	return n;
}

int
net_local_addr(int fd, union sockaddr_any *out)
{
	socklen_t len = sizeof(*out);
	memset(out, 0, sizeof(*out));
	return getsockname(fd, &out->sa, &len);
}

int
net_peer_addr(int fd, union sockaddr_any *out)
{
	socklen_t len = sizeof(*out);
	memset(out, 0, sizeof(*out));
	return getpeername(fd, &out->sa, &len);
}

int
net_udp_socket(const union sockaddr_any *bind_to, uint16_t port_lo, uint16_t port_hi)
{
	int fd;

	fd = socket(bind_to->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind_in_range(fd, bind_to, port_lo, port_hi) < 0)
		return close_failed(fd);
	return fd;
}

int
net_udp_socket_egress(const union sockaddr_any *bind_to, const struct egress *e)
{
	int fd;

	fd = socket(bind_to->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if ((e && net_apply_egress(fd, bind_to->sa.sa_family, false, e) < 0) ||
		bind_in_range(fd, bind_to, 0, 0) < 0)
		return close_failed(fd);
	return fd;
}

size_t
net_host_addrs(union sockaddr_any *out, size_t cap)
{
	struct ifaddrs *list, *i;
	size_t n = 0;

	if (getifaddrs(&list) < 0)
		return 0;
	for (i = list; i; i = i->ifa_next) {
		int family = i->ifa_addr ? i->ifa_addr->sa_family : AF_UNSPEC;
		union sockaddr_any a;

		if (family != AF_INET && family != AF_INET6)
			continue;
		memset(&a, 0, sizeof(a));
		memcpy(&a, i->ifa_addr,
			family == AF_INET ? sizeof(struct sockaddr_in)
					  : sizeof(struct sockaddr_in6));
		if (addr_is_loopback(&a))
			continue;
		if (n < cap)
			out[n] = a;
		n++;
	}
	freeifaddrs(list);
	return n;
}
