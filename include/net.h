/*
 * net: nonblocking socket helpers — address parsing and formatting, listen,
 * accept, connect start/finish. EINTR is absorbed here; everything else is
 * -1 with errno for the caller.
 */
#ifndef SOCKS5D_NET_H
#define SOCKS5D_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_storage ss;
};

/* "1.2.3.4:80" and "[::1]:80" (port required unless default_port >= 0, in
 * which case a bare address is allowed). Returns 0 or -1. No name lookups. */
int addr_parse_with_port(const char *s, int default_port, union sockaddr_any *out);
/* A bare numeric address, IPv4 or IPv6, with the given port. */
int addr_parse(const char *s, uint16_t port, union sockaddr_any *out);
socklen_t addr_len(const union sockaddr_any *a);
uint16_t addr_port(const union sockaddr_any *a);
void addr_set_port(union sockaddr_any *a, uint16_t port);
bool addr_equal(const union sockaddr_any *a, const union sockaddr_any *b);
bool addr_ip_equal(const union sockaddr_any *a, const union sockaddr_any *b);
/* Turns ::ffff:a.b.c.d into a.b.c.d; leaves other addresses alone. */
void addr_unmap(union sockaddr_any *a);
bool addr_is_loopback(const union sockaddr_any *a);
/* 0.0.0.0 or :: (also ::ffff:0.0.0.0), any port. */
bool addr_is_unspecified(const union sockaddr_any *a);
/* "1.2.3.4:80" / "[::1]:80"; out must hold ADDR_STRLEN. */
#define ADDR_STRLEN (INET6_ADDRSTRLEN + 8)
const char *addr_format(const union sockaddr_any *a, char *out, size_t cap);
/* Address only, no port. */
const char *addr_ip_format(const union sockaddr_any *a, char *out, size_t cap);

/* Nonblocking, close-on-exec listening TCP socket with SO_REUSEADDR (and
 * IPV6_V6ONLY for IPv6). Returns the fd or -1. */
int net_listen_tcp(const union sockaddr_any *a, int backlog);
/* The same with SO_REUSEPORT, so several worker processes can each have
 * their own listening socket on one address. */
int net_listen_tcp_reuseport(const union sockaddr_any *a, int backlog);
/* A listening socket on a's IP with a port from lo..hi (both 0: any port),
 * for BIND. At most 64 ports of the range are tried, from a random start:
 * a range full of idle listeners must not make each request walk it. */
int net_listen_tcp_range(const union sockaddr_any *a, int backlog, uint16_t lo, uint16_t hi);
/* accept4 nonblocking+cloexec; -1 with errno (EAGAIN when drained). */
int net_accept(int lfd, union sockaddr_any *peer);
/* Starts a nonblocking connect. Returns the fd (connect in progress or done)
 * or -1 with errno (the immediate failure). */
int net_connect_start(const union sockaddr_any *to, const union sockaddr_any *from);
/* After EPOLLOUT: 0 when connected, else the SO_ERROR errno value. */
int net_connect_result(int fd);
int net_set_nodelay(int fd);
int net_local_addr(int fd, union sockaddr_any *out);
int net_peer_addr(int fd, union sockaddr_any *out);
/* Nonblocking UDP socket bound to a (port 0 = any, or the range lo..hi,
 * probed as net_listen_tcp_range does). */
int net_udp_socket(const union sockaddr_any *bind_to, uint16_t port_lo, uint16_t port_hi);

#endif
