/*
 * net: small nonblocking socket helpers sharing one convention: -1 with
 * errno on failure, EINTR retried here. No name lookups ever happen here;
 * addresses are numeric (the resolver turns names into addresses).
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

int
addr_parse(const char *s, uint16_t port, union sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, &out->sin.sin_addr) == 1) {
		out->sin.sin_family = AF_INET;
		out->sin.sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &out->sin6.sin6_addr) == 1) {
		out->sin6.sin6_family = AF_INET6;
		out->sin6.sin6_port = htons(port);
		return 0;
	}
	return -1;
}

static int
parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end != '\0' || v < 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
addr_parse_with_port(const char *s, int default_port, union sockaddr_any *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_s = NULL;
	uint16_t port;
	size_t hl;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return -1;
		hl = (size_t)(close - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (close[1] == ':')
			port_s = close + 2;
		else if (close[1] != '\0')
			return -1;
		/* brackets are for IPv6 only */
		if (!strchr(host, ':'))
			return -1;
	} else {
		const char *colon = strchr(s, ':');
		/* more than one colon: a bare IPv6 address without a port */
		if (colon && strchr(colon + 1, ':'))
			colon = NULL;
		hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl == 0 || hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (colon)
			port_s = colon + 1;
	}
	if (port_s) {
		if (parse_port(port_s, &port) < 0)
			return -1;
	} else {
		if (default_port < 0)
			return -1;
		port = (uint16_t)default_port;
	}
	return addr_parse(host, port, out);
}

socklen_t
addr_len(const union sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in);
}

uint16_t
addr_port(const union sockaddr_any *a)
{
	return ntohs(a->sa.sa_family == AF_INET6 ? a->sin6.sin6_port : a->sin.sin_port);
}

void
addr_set_port(union sockaddr_any *a, uint16_t port)
{
	if (a->sa.sa_family == AF_INET6)
		a->sin6.sin6_port = htons(port);
	else
		a->sin.sin_port = htons(port);
}

bool
addr_ip_equal(const union sockaddr_any *a, const union sockaddr_any *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->sin.sin_addr.s_addr == b->sin.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr, 16) == 0;
	return false;
}

bool
addr_equal(const union sockaddr_any *a, const union sockaddr_any *b)
{
	return addr_ip_equal(a, b) && addr_port(a) == addr_port(b);
}

void
addr_unmap(union sockaddr_any *a)
{
	struct sockaddr_in sin;

	if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr))
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = a->sin6.sin6_port;
	memcpy(&sin.sin_addr, &a->sin6.sin6_addr.s6_addr[12], 4);
	memset(a, 0, sizeof(*a));
	a->sin = sin;
}

bool
addr_is_loopback(const union sockaddr_any *a)
{
	if (a->sa.sa_family == AF_INET)
		return (ntohl(a->sin.sin_addr.s_addr) >> 24) == 127;
	if (a->sa.sa_family == AF_INET6) {
		if (IN6_IS_ADDR_LOOPBACK(&a->sin6.sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr) &&
		       a->sin6.sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

bool
addr_is_unspecified(const union sockaddr_any *a)
{
	if (a->sa.sa_family == AF_INET)
		return a->sin.sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&a->sin6.sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr) &&
			memcmp(&a->sin6.sin6_addr.s6_addr[12], "\0\0\0\0", 4) == 0);
	return false;
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

const char *
addr_ip_format(const union sockaddr_any *a, char *out, size_t cap)
{
	const void *src = a->sa.sa_family == AF_INET6 ? (const void *)&a->sin6.sin6_addr
						      : (const void *)&a->sin.sin_addr;
	if (cap == 0)
		return out;
	if ((a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) ||
	    !inet_ntop(a->sa.sa_family, src, out, (socklen_t)cap))
		snprintf(out, cap, "?");
	return out;
}

const char *
addr_format(const union sockaddr_any *a, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	addr_ip_format(a, ip, sizeof(ip));
	if (a->sa.sa_family == AF_INET6)
		snprintf(out, cap, "[%s]:%u", ip, addr_port(a));
	else
		snprintf(out, cap, "%s:%u", ip, addr_port(a));
	return out;
}

int
net_set_nodelay(int fd)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int
listen_tcp(const union sockaddr_any *a, int backlog, bool reuseport, uint16_t lo, uint16_t hi)
{
	int fd, one = 1, saved;

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
	if ((lo || hi ? bind_in_range(fd, a, lo, hi) : bind(fd, &a->sa, addr_len(a))) < 0)
		goto fail;
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int
net_listen_tcp(const union sockaddr_any *a, int backlog)
{
	return listen_tcp(a, backlog, false, 0, 0);
}

int
net_listen_tcp_range(const union sockaddr_any *a, int backlog, uint16_t lo, uint16_t hi)
{
	union sockaddr_any any_port = *a;

	/* No range: any port, chosen by the kernel. */
	addr_set_port(&any_port, 0);
	return listen_tcp(&any_port, backlog, false, lo, hi);
}

int
net_listen_tcp_reuseport(const union sockaddr_any *a, int backlog)
{
	return listen_tcp(a, backlog, true, 0, 0);
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
net_connect_start(const union sockaddr_any *to, const union sockaddr_any *from)
{
	int fd, rc, saved;

	fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
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
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
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
	int fd, saved;

	fd = socket(bind_to->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind_in_range(fd, bind_to, port_lo, port_hi) == 0)
		return fd;
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}
