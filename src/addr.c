/*
 * addr: socket addresses as plain values: numeric parsing, formatting,
 * comparison, IPv4-mapped unmapping and the loopback/unspecified tests.
 * Nothing here touches a socket or looks a name up; opening sockets is
 * net's job and turning names into addresses the resolver's.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "strnum.h"

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
		unsigned v;

		if (strnum_parse_uint(port_s, 0, 65535, &v) != STRNUM_OK)
			return -1;
		port = (uint16_t)v;
	} else {
		if (default_port < 0)
			return -1;
		port = (uint16_t)default_port;
	}
	return addr_parse(host, port, out);
}

void
addr_from_ip(union sockaddr_any *out, int family, const void *ip, uint16_t port)
{
	memset(out, 0, sizeof(*out));
	if (family == AF_INET6) {
		out->sin6.sin6_family = AF_INET6;
		memcpy(&out->sin6.sin6_addr, ip, 16);
		out->sin6.sin6_port = htons(port);
	} else {
		out->sin.sin_family = AF_INET;
		memcpy(&out->sin.sin_addr, ip, 4);
		out->sin.sin_port = htons(port);
	}
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
	uint8_t v4[4];

	if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr))
		return;
	memcpy(v4, &a->sin6.sin6_addr.s6_addr[12], 4);
	addr_from_ip(a, AF_INET, v4, addr_port(a));
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
