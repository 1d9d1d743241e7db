/*
 * proto: the pure SOCKS5 codec (RFC 1928, RFC 1929). Incremental parsers for
 * the method-selection message, the username/password request, the request
 * and the UDP request header, and encoders for every reply. No I/O, no
 * malloc, no globals, no logging: bytes in, structs out.
 */
#ifndef SOCKS5D_PROTO_H
#define SOCKS5D_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SOCKS_VERSION 0x05      /* RFC 1928 §3 */
#define SOCKS_AUTH_VERSION 0x01 /* RFC 1929 §2 */

#define SOCKS_METHOD_NONE 0x00
#define SOCKS_METHOD_GSSAPI 0x01
#define SOCKS_METHOD_PASSWORD 0x02
#define SOCKS_METHOD_NO_ACCEPTABLE 0xFF

#define SOCKS_CMD_CONNECT 0x01
#define SOCKS_CMD_BIND 0x02
#define SOCKS_CMD_UDP_ASSOCIATE 0x03

#define SOCKS_ATYP_IPV4 0x01
#define SOCKS_ATYP_DOMAIN 0x03
#define SOCKS_ATYP_IPV6 0x04

/* RFC 1928 §6 */
#define SOCKS_REP_SUCCEEDED 0x00
#define SOCKS_REP_GENERAL_FAILURE 0x01
#define SOCKS_REP_NOT_ALLOWED 0x02
#define SOCKS_REP_NETWORK_UNREACHABLE 0x03
#define SOCKS_REP_HOST_UNREACHABLE 0x04
#define SOCKS_REP_CONNECTION_REFUSED 0x05
#define SOCKS_REP_TTL_EXPIRED 0x06
#define SOCKS_REP_COMMAND_NOT_SUPPORTED 0x07
#define SOCKS_REP_ATYP_NOT_SUPPORTED 0x08

#define SOCKS_AUTH_STATUS_OK 0x00
#define SOCKS_AUTH_STATUS_FAILURE 0x01

/* Largest messages (RFC sizes): the handshake buffer is sized from these. */
#define PROTO_GREETING_MAX (2 + 255)
#define PROTO_USERPASS_MAX (3 + 255 + 255)
#define PROTO_REQUEST_MAX (4 + 1 + 255 + 2)
#define PROTO_UDP_HEADER_MAX (4 + 1 + 255 + 2)
#define PROTO_REPLY_MAX (4 + 16 + 2)

enum proto_status {
	PROTO_OK = 0,             /* a whole message was parsed; *consumed set */
	PROTO_NEED_MORE,          /* valid so far; feed more bytes */
	PROTO_ERR_VERSION,        /* VER is not 0x05 (greeting/request/...) */
	PROTO_ERR_NO_METHODS,     /* greeting with NMETHODS = 0 */
	PROTO_ERR_AUTH_VERSION,   /* RFC 1929 VER is not 0x01 */
	PROTO_ERR_EMPTY_USERNAME, /* RFC 1929 ULEN = 0 */
	PROTO_ERR_COMMAND,        /* unknown CMD */
	PROTO_ERR_RESERVED,       /* RSV byte is not 0x00 */
	PROTO_ERR_ATYP,           /* unknown ATYP */
	PROTO_ERR_EMPTY_NAME,     /* ATYP domain with length 0 */
	PROTO_ERR_BAD_NAME,       /* domain name containing a NUL byte */
	PROTO_ERR_TRUNCATED,      /* datagram shorter than its header (UDP only) */
	PROTO_ERR_TOO_LONG,       /* SOCKS4 USERID or 4a domain over 255 bytes */
};

/* SOCKS4 (and the 4a domain extension), spoken on the same port. */
#define SOCKS4_VERSION 0x04
#define SOCKS4_REPLY_VERSION 0x00
#define SOCKS4_REP_GRANTED 90
#define SOCKS4_REP_REJECTED 91
#define PROTO_SOCKS4_REQUEST_MAX (8 + 256 + 256)
#define PROTO_SOCKS4_REPLY_LEN 8

/* A SOCKS address: IPv4, IPv6 or a domain name, with a port. */
struct socks_addr {
	uint8_t atyp;  /* SOCKS_ATYP_* */
	uint16_t port; /* host byte order */
	union {
		uint8_t ipv4[4];
		uint8_t ipv6[16];
	} ip;             /* network byte order; valid for IPV4/IPV6 */
	uint8_t name_len; /* valid for DOMAIN */
	char name[256];   /* NUL-terminated; valid for DOMAIN */
};

struct proto_greeting {
	uint8_t nmethods;
	uint8_t methods[255];
};

struct proto_userpass {
	uint8_t ulen;
	char user[256]; /* NUL-terminated */
	uint8_t plen;
	char pass[256]; /* NUL-terminated; PLEN 0 is accepted (never matches) */
};

struct proto_request {
	uint8_t cmd; /* SOCKS_CMD_* */
	struct socks_addr dst;
};

struct proto_socks4_request {
	uint8_t cmd;           /* SOCKS_CMD_CONNECT or SOCKS_CMD_BIND */
	struct socks_addr dst; /* IPV4, or DOMAIN for 4a (DSTIP 0.0.0.x, x != 0) */
	char userid[256];      /* NUL-terminated USERID (not authenticated) */
};

struct proto_udp_header {
	uint8_t frag; /* FRAG; non-zero datagrams are dropped by callers */
	struct socks_addr dst;
	size_t header_len; /* bytes before DATA */
};

/*
 * Parsers. Each looks at p[0..len) which starts at a message boundary and
 * returns PROTO_OK with *consumed = the message's length (bytes after it are
 * untouched: pipelined input), PROTO_NEED_MORE when the bytes so far are a
 * valid prefix, or a specific error as soon as an invalid byte is seen.
 * Output structs are only meaningful on PROTO_OK.
 */
enum proto_status proto_parse_greeting(const uint8_t *p, size_t len, struct proto_greeting *out,
	size_t *consumed);
enum proto_status proto_parse_userpass(const uint8_t *p, size_t len, struct proto_userpass *out,
	size_t *consumed);
enum proto_status proto_parse_request(const uint8_t *p, size_t len, struct proto_request *out,
	size_t *consumed);
/* A whole datagram: NEED_MORE never happens, a short one is PROTO_ERR_TRUNCATED. */
enum proto_status proto_parse_udp_header(const uint8_t *p, size_t len,
	struct proto_udp_header *out);

/* ATYP ADDR PORT (the address part of a request, a reply or a UDP header):
 * *used is its length. */
enum proto_status proto_parse_addr(const uint8_t *p, size_t len, struct socks_addr *a,
	size_t *used);

/* SOCKS4/4a request: VN=4 CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]. */
enum proto_status proto_parse_socks4_request(const uint8_t *p, size_t len,
	struct proto_socks4_request *out, size_t *consumed);

/* First method of prefs[] (server preference order) that the client offered;
 * SOCKS_METHOD_NO_ACCEPTABLE when none. */
uint8_t proto_choose_method(const struct proto_greeting *g, const uint8_t *prefs, size_t nprefs);

/* Encoders return the number of bytes written into out (never more than the
 * _MAX sizes above). */
size_t proto_encode_method(uint8_t out[2], uint8_t method);
size_t proto_encode_auth_status(uint8_t out[2], uint8_t status);
/* VER REP RSV ATYP BND.ADDR BND.PORT. bnd may be NULL (or AF_UNSPEC): then
 * 0.0.0.0:0 with ATYP IPv4. An IPv4-mapped IPv6 address is sent as IPv4. */
size_t proto_encode_reply(uint8_t out[PROTO_REPLY_MAX], uint8_t rep, const struct sockaddr *bnd);
/* VN=0 CD DSTPORT DSTIP; bnd's port and IPv4 address, zeros when bnd is
 * NULL or not IPv4 (SOCKS4 cannot carry IPv6). */
size_t proto_encode_socks4_reply(uint8_t out[PROTO_SOCKS4_REPLY_LEN], uint8_t cd,
	const struct sockaddr *bnd);
/* RSV RSV FRAG=0 ATYP ADDR PORT for a datagram coming back from src. */
size_t proto_encode_udp_header(uint8_t out[PROTO_UDP_HEADER_MAX], const struct sockaddr *src);
/* Encodes a socks_addr as ATYP ADDR PORT (used by tests and clients). */
size_t proto_encode_addr(uint8_t *out, size_t cap, const struct socks_addr *a);

/* The REP a request error is answered with (RFC 1928 §6): COMMAND ->
 * 0x07, ATYP -> 0x08, other request errors -> 0x01. PROTO_ERR_VERSION has no
 * reply (the caller closes silently); this returns 0xFF for it. */
uint8_t proto_rep_for_status(enum proto_status st);
/* errno of a failed connect -> REP: ECONNREFUSED 0x05, ENETUNREACH 0x03,
 * EHOSTUNREACH 0x04, ETIMEDOUT 0x04, anything else 0x01. */
uint8_t proto_rep_from_errno(int err);
/* Names for logs, never NULL: "unknown status", "unassigned" (REP) and
 * "unknown" (CMD) for values without one. */
const char *proto_status_str(enum proto_status st);
const char *proto_rep_str(uint8_t rep);
const char *proto_cmd_str(uint8_t cmd);

/* socks_addr <-> sockaddr for IPV4/IPV6 (DOMAIN returns -1). */
int proto_addr_to_sockaddr(const struct socks_addr *a, struct sockaddr_storage *ss, socklen_t *len);
void proto_addr_from_sockaddr(struct socks_addr *a, const struct sockaddr *sa);
/* "1.2.3.4:80", "[::1]:80", "example.com:443" into out (always terminated). */
void proto_addr_format(const struct socks_addr *a, char *out, size_t cap);
/* Whether the address is all zeros (0.0.0.0 / :: with any port). */
bool proto_addr_is_unspecified(const struct socks_addr *a);

#endif
