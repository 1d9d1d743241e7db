/*
 * net: nonblocking socket helpers — listen, accept, connect start/finish,
 * UDP sockets, local/peer addresses. Addresses themselves (the union,
 * parsing, formatting) are addr's; this header includes it. EINTR is
 * absorbed here; everything else is -1 with errno for the caller.
 */
#ifndef SOCKS5D_NET_H
#define SOCKS5D_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct egress;

/* Nonblocking, close-on-exec listening TCP socket with SO_REUSEADDR (and
 * IPV6_V6ONLY for IPv6). Returns the fd or -1. */
int net_listen_tcp(const union sockaddr_any *a, int backlog);
/* The same with SO_REUSEPORT, so several worker processes can each have
 * their own listening socket on one address. */
int net_listen_tcp_reuseport(const union sockaddr_any *a, int backlog);
/* A listening socket on a's IP with a port from lo..hi (both 0: any port),
 * for BIND. At most 64 ports of the range are tried, from a random start:
 * a range full of idle listeners must not make each request walk it. The
 * egress settings e (NULL: none) apply before the bind: the peer it
 * accepts inherits them. */
int net_listen_tcp_range(const union sockaddr_any *a, int backlog, uint16_t lo, uint16_t hi,
	const struct egress *e);
/* listen() again on a listening socket: a new backlog. 0 or -1 with errno. */
int net_relisten(int fd, int backlog);
/* accept4 nonblocking+cloexec; -1 with errno (EAGAIN when drained). */
int net_accept(int lfd, union sockaddr_any *peer);
/* Starts a nonblocking connect from the source address from (NULL or
 * another family: the kernel's choice; the port is always the kernel's)
 * with the egress settings e (NULL: none) applied before it. Returns the fd
 * (connect in progress or done) or -1 with errno (the immediate failure,
 * or the setting that could not be applied). */
int net_connect_start(const union sockaddr_any *to, const union sockaddr_any *from,
	const struct egress *e);
/* After EPOLLOUT: 0 when connected, else the SO_ERROR errno value. */
int net_connect_result(int fd);
/* TCP_NODELAY on fd. Returns 0 or -1 with errno. */
int net_set_nodelay(int fd);
/* The egress settings e holds (the unset ones are left alone) on fd, a
 * socket of family (tcp: a TCP one): SO_BINDTODEVICE, SO_MARK, IP_TOS or
 * IPV6_TCLASS, IP_FREEBIND / IPV6_FREEBIND when family's source is drawn
 * from a prefix, and for TCP keepalive and TCP_USER_TIMEOUT. Before bind
 * and connect. Returns 0, or -1 with errno of the first that failed. */
int net_apply_egress(int fd, int family, bool tcp, const struct egress *e);
/* Only the TCP part: keepalive and TCP_USER_TIMEOUT (a client's socket;
 * set on a listener, the connections it accepts inherit them). */
int net_apply_tcp_egress(int fd, const struct egress *e);
/* One read from a nonblocking fd, again after EINTR: the bytes read (> 0);
 * 0 at EOF or on an error (the caller closes); -1 with errno EAGAIN when
 * there is nothing to read now. */
ssize_t net_read_some(int fd, void *buf, size_t len);
/* getsockname/getpeername into *out (zeroed first). Returns 0 or -1 with
 * errno. */
int net_local_addr(int fd, union sockaddr_any *out);
int net_peer_addr(int fd, union sockaddr_any *out);
/* Nonblocking UDP socket bound to a (port 0 = any, or the range lo..hi,
 * probed as net_listen_tcp_range does). */
int net_udp_socket(const union sockaddr_any *bind_to, uint16_t port_lo, uint16_t port_hi);
/* An outbound UDP socket bound to bind_to (any port) with the egress
 * settings e applied before the bind. */
int net_udp_socket_egress(const union sockaddr_any *bind_to, const struct egress *e);

/* The host's own addresses but loopback, from getifaddrs: fills out with
 * up to cap and returns how many there are (more than cap: some left
 * out). 0 when they cannot be read. */
size_t net_host_addrs(union sockaddr_any *out, size_t cap);

#endif
