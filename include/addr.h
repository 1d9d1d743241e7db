/*
 * addr: socket addresses as values. One union big enough for IPv4 and IPv6,
 * numeric parsing ("1.2.3.4:80", "[::1]:80"), formatting, comparison and
 * the small questions callers ask of an address. Pure: no system calls, no
 * name lookups, no logging, so parsers (config, acl, proxyproto, dns) can
 * use it without linking the socket helpers in net.
 */
#ifndef SOCKS5D_ADDR_H
#define SOCKS5D_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_storage ss;
};

/* Longest addr_format output with its NUL: "[" IPv6 "]:" 65535. */
#define ADDR_STRLEN (INET6_ADDRSTRLEN + 8)

/*
 * "1.2.3.4:80" or "[::1]:80" into *out. The port is required unless
 * default_port >= 0, in which case a bare address ("1.2.3.4", "::1",
 * "[::1]") takes it. The port is decimal digits only, 0..65535. No name
 * lookups. Returns 0, or -1 with *out unspecified.
 */
int addr_parse_with_port(const char *s, int default_port, union sockaddr_any *out);
/* A bare numeric IPv4 or IPv6 address (no brackets, no scope) with the
 * given port (host order). Returns 0, or -1 with *out unspecified. */
int addr_parse(const char *s, uint16_t port, union sockaddr_any *out);
/* Sets *out to family's address (AF_INET: 4 bytes at ip, AF_INET6: 16;
 * network order) and port (host order); every other byte is zero. */
void addr_from_ip(union sockaddr_any *out, int family, const void *ip, uint16_t port);

/* The length to pass to bind/connect/sendto for a's family. */
socklen_t addr_len(const union sockaddr_any *a);
/* Port in host order; addresses of other families than AF_INET6 are read as
 * AF_INET (callers only hold those two). */
uint16_t addr_port(const union sockaddr_any *a);
void addr_set_port(union sockaddr_any *a, uint16_t port);
/* Same family, address and port. Scope ids and flow labels are ignored. */
bool addr_equal(const union sockaddr_any *a, const union sockaddr_any *b);
/* Same family and address, any port. False for families other than
 * AF_INET and AF_INET6. */
bool addr_ip_equal(const union sockaddr_any *a, const union sockaddr_any *b);
/* Turns ::ffff:a.b.c.d into a.b.c.d (port kept); leaves other addresses
 * alone. */
void addr_unmap(union sockaddr_any *a);
/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool addr_is_loopback(const union sockaddr_any *a);
/* 0.0.0.0 or :: (also ::ffff:0.0.0.0), any port. */
bool addr_is_unspecified(const union sockaddr_any *a);

/* "1.2.3.4:80" / "[::1]:80" into out[0..cap) (always terminated when cap
 * > 0; ADDR_STRLEN always suffices). Returns out. */
const char *addr_format(const union sockaddr_any *a, char *out, size_t cap);
/* The address alone, no port, no brackets; "?" for a family that is
 * neither IPv4 nor IPv6. Returns out. */
const char *addr_ip_format(const union sockaddr_any *a, char *out, size_t cap);

#endif
