/*
 * proto: the pure SOCKS5 codec. Parses the method-selection message, the
 * RFC 1929 username/password request, the request and the UDP request
 * header from whatever prefix of bytes has arrived, and encodes every reply.
 * Reading sockets, buffering, deciding and logging belong to the callers;
 * this file only turns bytes into structs and back.
 */
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "log.h"
#include "strnum.h"

/* Big-endian 16-bit field at p (RFC 1928 §3: network octet order). */
static uint16_t
get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void
put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)(v & 0xff);
}

/*
 * ATYP DST.ADDR DST.PORT at p[0..len) (RFC 1928 §4, §5), shared by the
 * request, the UDP header and (upstream) a parent's reply. Rejects as soon as the offending byte is in
 * view: a NUL inside the part of a domain name received so far fails now,
 * not when the name is complete, so the caller answers without waiting.
 */
enum proto_status
proto_parse_addr(const uint8_t *p, size_t len, struct socks_addr *a, size_t *used)
{
	size_t addr_len;

	if (len < 1)
		return PROTO_NEED_MORE;
	switch (p[0]) {
	case SOCKS_ATYP_IPV4:
		addr_len = 4;
		break;
	case SOCKS_ATYP_IPV6:
		addr_len = 16;
		break;
	case SOCKS_ATYP_DOMAIN: {
		size_t seen;

		if (len < 2)
			return PROTO_NEED_MORE;
		if (p[1] == 0)
			return PROTO_ERR_EMPTY_NAME;
		seen = len - 2 < p[1] ? len - 2 : p[1];
		/* The name is stored NUL-terminated; an embedded NUL would make
		 * the name we resolve differ from the one we log and match. */
		if (memchr(p + 2, 0, seen) != NULL)
			return PROTO_ERR_BAD_NAME;
		addr_len = 1 + (size_t)p[1];
		break;
	}
	default:
		return PROTO_ERR_ATYP;
	}
	if (len < 1 + addr_len + 2)
		return PROTO_NEED_MORE;

	memset(a, 0, sizeof(*a));
	a->atyp = p[0];
	if (a->atyp == SOCKS_ATYP_IPV4)
		memcpy(a->ip.ipv4, p + 1, 4);
	else if (a->atyp == SOCKS_ATYP_IPV6)
		memcpy(a->ip.ipv6, p + 1, 16);
	else {
		a->name_len = p[1];
		memcpy(a->name, p + 2, a->name_len);
	}
	a->port = get_be16(p + 1 + addr_len);
	*used = 1 + addr_len + 2;
	return PROTO_OK;
}

/*
 * The first byte of every message but the UDP header is a version: NEED_MORE
 * until it has arrived, err as soon as it is wrong, OK once it and the byte
 * after it are in view (each parser judges that second byte itself).
 */
static enum proto_status
check_version(const uint8_t *p, size_t len, uint8_t version, enum proto_status err)
{
	if (len < 1)
		return PROTO_NEED_MORE;
	if (p[0] != version)
		return err;
	return len < 2 ? PROTO_NEED_MORE : PROTO_OK;
}

/* RFC 1928 §3: VER NMETHODS METHODS. */
enum proto_status
proto_parse_greeting(const uint8_t *p, size_t len, struct proto_greeting *out, size_t *consumed)
{
	enum proto_status st;
	size_t n;

	if ((st = check_version(p, len, SOCKS_VERSION, PROTO_ERR_VERSION)) != PROTO_OK)
		return st;
	if (p[1] == 0)
		return PROTO_ERR_NO_METHODS;
	n = 2 + (size_t)p[1];
	if (len < n)
		return PROTO_NEED_MORE;

	out->nmethods = p[1];
	memcpy(out->methods, p + 2, out->nmethods);
	*consumed = n;
	return PROTO_OK;
}

/* RFC 1929 §2: VER ULEN UNAME PLEN PASSWD. */
enum proto_status
proto_parse_userpass(const uint8_t *p, size_t len, struct proto_userpass *out, size_t *consumed)
{
	enum proto_status st;
	size_t ulen, plen;

	if ((st = check_version(p, len, SOCKS_AUTH_VERSION, PROTO_ERR_AUTH_VERSION)) != PROTO_OK)
		return st;
	if (p[1] == 0)
		return PROTO_ERR_EMPTY_USERNAME;
	ulen = p[1];
	if (len < 2 + ulen + 1)
		return PROTO_NEED_MORE;
	/* PLEN 0 is legal on the wire; it simply never matches a secret. */
	plen = p[2 + ulen];
	if (len < 3 + ulen + plen)
		return PROTO_NEED_MORE;

	out->ulen = (uint8_t)ulen;
	memcpy(out->user, p + 2, ulen);
	out->user[ulen] = '\0';
	out->plen = (uint8_t)plen;
	memcpy(out->pass, p + 3 + ulen, plen);
	out->pass[plen] = '\0';
	*consumed = 3 + ulen + plen;
	return PROTO_OK;
}

/* RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT. */
enum proto_status
proto_parse_request(const uint8_t *p, size_t len, struct proto_request *out, size_t *consumed)
{
	enum proto_status st;
	size_t used;

	if ((st = check_version(p, len, SOCKS_VERSION, PROTO_ERR_VERSION)) != PROTO_OK)
		return st;
	if (p[1] != SOCKS_CMD_CONNECT && p[1] != SOCKS_CMD_BIND && p[1] != SOCKS_CMD_UDP_ASSOCIATE)
		return PROTO_ERR_COMMAND;
	if (len < 3)
		return PROTO_NEED_MORE;
	if (p[2] != 0)
		return PROTO_ERR_RESERVED;
	st = proto_parse_addr(p + 3, len - 3, &out->dst, &used);
	if (st != PROTO_OK)
		return st;

	out->cmd = p[1];
	*consumed = 3 + used;
	return PROTO_OK;
}

/* RFC 1928 §7: RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA, one whole datagram. */
enum proto_status
proto_parse_udp_header(const uint8_t *p, size_t len, struct proto_udp_header *out)
{
	enum proto_status st;
	size_t used;

	/* Bytes are judged in wire order, so a datagram that is both short and
	 * wrong reports the first wrong byte it does contain. */
	if (len >= 1 && p[0] != 0)
		return PROTO_ERR_RESERVED;
	if (len >= 2 && p[1] != 0)
		return PROTO_ERR_RESERVED;
	if (len < 3)
		return PROTO_ERR_TRUNCATED;
	st = proto_parse_addr(p + 3, len - 3, &out->dst, &used);
	if (st == PROTO_NEED_MORE)
		return PROTO_ERR_TRUNCATED;
	if (st != PROTO_OK)
		return st;

	out->frag = p[2];
	out->header_len = 3 + used;
	return PROTO_OK;
}

uint8_t
proto_choose_method(const struct proto_greeting *g, const uint8_t *prefs, size_t nprefs)
{
	size_t i;

	/* Server order decides (RFC 1928 §3 lets the server pick); the
	 * client's order is only a list of what it can do. */
	for (i = 0; i < nprefs; i++) {
		if (memchr(g->methods, prefs[i], g->nmethods) != NULL)
			return prefs[i];
	}
	return SOCKS_METHOD_NO_ACCEPTABLE;
}

/* RFC 1928 §3: VER METHOD. */
size_t
proto_encode_method(uint8_t out[2], uint8_t method)
{
	out[0] = SOCKS_VERSION;
	out[1] = method;
	return 2;
}

/* RFC 1929 §2: VER STATUS, where VER is the sub-negotiation version. */
size_t
proto_encode_auth_status(uint8_t out[2], uint8_t status)
{
	out[0] = SOCKS_AUTH_VERSION;
	out[1] = status;
	return 2;
}

/*
 * The address and port (network order) a reply carries for sa: 4 address
 * bytes for AF_INET and for IPv4-mapped IPv6 (a dual-stack socket reports
 * v4 peers that way, and clients expect the v4 form), 16 for other IPv6.
 * Returns the address length, or 0 for anything else (NULL, AF_UNSPEC,
 * AF_UNIX), with ip and port zeroed.
 */
static size_t
reply_addr(const struct sockaddr *sa, uint8_t ip[16], uint8_t port[2])
{
	memset(ip, 0, 16);
	memset(port, 0, 2);
	if (sa != NULL && sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof(sin));
		memcpy(ip, &sin.sin_addr, 4);
		memcpy(port, &sin.sin_port, 2);
		return 4;
	}
	if (sa != NULL && sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		bool mapped;

		memcpy(&sin6, sa, sizeof(sin6));
		mapped = IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr);
		memcpy(ip, sin6.sin6_addr.s6_addr + (mapped ? 12 : 0), mapped ? 4 : 16);
		memcpy(port, &sin6.sin6_port, 2);
		return mapped ? 4 : 16;
	}
	return 0;
}

/* ATYP ADDR PORT for a socket address; anything reply_addr cannot carry
 * becomes 0.0.0.0:0 so that a failure reply is still well formed. */
static size_t
encode_sockaddr(uint8_t *out, const struct sockaddr *sa)
{
	uint8_t ip[16], port[2];
	size_t n = reply_addr(sa, ip, port);

	if (n == 0)
		n = 4;
	out[0] = n == 4 ? SOCKS_ATYP_IPV4 : SOCKS_ATYP_IPV6;
	memcpy(out + 1, ip, n);
	memcpy(out + 1 + n, port, 2);
	return 1 + n + 2;
}

/* RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT. */
size_t
proto_encode_reply(uint8_t out[PROTO_REPLY_MAX], uint8_t rep, const struct sockaddr *bnd)
{
	out[0] = SOCKS_VERSION;
	out[1] = rep;
	out[2] = 0;
	return 3 + encode_sockaddr(out + 3, bnd);
}

/* RFC 1928 §7: RSV RSV FRAG ATYP ADDR PORT; we never fragment, so FRAG 0. */
size_t
proto_encode_udp_header(uint8_t out[PROTO_UDP_HEADER_MAX], const struct sockaddr *src)
{
	out[0] = 0;
	out[1] = 0;
	out[2] = 0;
	return 3 + encode_sockaddr(out + 3, src);
}

size_t
proto_encode_addr(uint8_t *out, size_t cap, const struct socks_addr *a)
{
	size_t n;

	switch (a->atyp) {
	case SOCKS_ATYP_IPV4:
		n = 1 + 4 + 2;
		if (cap < n)
			return 0;
		memcpy(out + 1, a->ip.ipv4, 4);
		break;
	case SOCKS_ATYP_IPV6:
		n = 1 + 16 + 2;
		if (cap < n)
			return 0;
		memcpy(out + 1, a->ip.ipv6, 16);
		break;
	case SOCKS_ATYP_DOMAIN:
		/* An empty name cannot be sent: the parser rejects it. */
		if (a->name_len == 0)
			return 0;
		n = 1 + 1 + (size_t)a->name_len + 2;
		if (cap < n)
			return 0;
		out[1] = a->name_len;
		memcpy(out + 2, a->name, a->name_len);
		break;
	default:
		return 0;
	}
	out[0] = a->atyp;
	put_be16(out + n - 2, a->port);
	return n;
}

/* Scans a NUL-terminated field of at most 255 bytes at p[0..len): the
 * length without the NUL in *n, or NEED_MORE / TOO_LONG. */
static enum proto_status
scan_cstring(const uint8_t *p, size_t len, size_t *n)
{
	size_t lim = len < 256 ? len : 256;
	const uint8_t *nul = memchr(p, 0, lim);

	if (nul) {
		*n = (size_t)(nul - p);
		return PROTO_OK;
	}
	return len >= 256 ? PROTO_ERR_TOO_LONG : PROTO_NEED_MORE;
}

enum proto_status
proto_parse_socks4_request(const uint8_t *p, size_t len, struct proto_socks4_request *out,
	size_t *consumed)
{
	enum proto_status st;
	size_t ulen, off;

	if ((st = check_version(p, len, SOCKS4_VERSION, PROTO_ERR_VERSION)) != PROTO_OK)
		return st;
	if (p[1] != SOCKS_CMD_CONNECT && p[1] != SOCKS_CMD_BIND)
		return PROTO_ERR_COMMAND;
	if (len < 8)
		return PROTO_NEED_MORE;
	st = scan_cstring(p + 8, len - 8, &ulen);
	if (st != PROTO_OK)
		return st;
	memset(out, 0, sizeof(*out));
	out->cmd = p[1];
	out->dst.port = get_be16(p + 2);
	memcpy(out->userid, p + 8, ulen);
	off = 8 + ulen + 1;
	/* SOCKS4a: DSTIP 0.0.0.x with x != 0 means "a domain name follows". */
	if (p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] != 0) {
		size_t dlen;
		st = scan_cstring(p + off, len - off, &dlen);
		if (st != PROTO_OK)
			return st;
		if (dlen == 0)
			return PROTO_ERR_EMPTY_NAME;
		out->dst.atyp = SOCKS_ATYP_DOMAIN;
		out->dst.name_len = (uint8_t)dlen;
		memcpy(out->dst.name, p + off, dlen);
		off += dlen + 1;
	} else {
		out->dst.atyp = SOCKS_ATYP_IPV4;
		memcpy(out->dst.ip.ipv4, p + 4, 4);
	}
	*consumed = off;
	return PROTO_OK;
}

size_t
proto_encode_socks4_reply(uint8_t out[PROTO_SOCKS4_REPLY_LEN], uint8_t cd,
	const struct sockaddr *bnd)
{
	uint8_t ip[16], port[2];

	memset(out, 0, PROTO_SOCKS4_REPLY_LEN);
	out[0] = SOCKS4_REPLY_VERSION;
	out[1] = cd;
	/* SOCKS4 carries IPv4 only; anything else stays zero. */
	if (reply_addr(bnd, ip, port) == 4) {
		memcpy(out + 2, port, 2);
		memcpy(out + 4, ip, 4);
	}
	return PROTO_SOCKS4_REPLY_LEN;
}

uint8_t
proto_rep_for_status(enum proto_status st)
{
	switch (st) {
	case PROTO_OK:
		return SOCKS_REP_SUCCEEDED;
	case PROTO_ERR_VERSION:
		/* Not a SOCKS5 peer: a reply would be in a language it does
		 * not speak, so the caller closes without one. */
		return 0xFF;
	case PROTO_ERR_COMMAND:
		return SOCKS_REP_COMMAND_NOT_SUPPORTED;
	case PROTO_ERR_ATYP:
		return SOCKS_REP_ATYP_NOT_SUPPORTED;
	case PROTO_NEED_MORE:
	case PROTO_ERR_NO_METHODS:
	case PROTO_ERR_AUTH_VERSION:
	case PROTO_ERR_EMPTY_USERNAME:
	case PROTO_ERR_RESERVED:
	case PROTO_ERR_EMPTY_NAME:
	case PROTO_ERR_BAD_NAME:
	case PROTO_ERR_TRUNCATED:
	case PROTO_ERR_TOO_LONG:
		break;
	}
	return SOCKS_REP_GENERAL_FAILURE;
}

uint8_t
proto_rep_from_errno(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return SOCKS_REP_CONNECTION_REFUSED;
	case ENETUNREACH:
	case ENETDOWN:
		return SOCKS_REP_NETWORK_UNREACHABLE;
	case EHOSTUNREACH:
	case EHOSTDOWN:
	/* A connect timeout means the host never answered; 0x06 "TTL
	 * expired" describes an IP TTL running out, which we cannot see. */
	case ETIMEDOUT:
		return SOCKS_REP_HOST_UNREACHABLE;
	default:
		return SOCKS_REP_GENERAL_FAILURE;
	}
}

/* Names for logs, one table per kind of number, with designated
 * initialisers so a name cannot drift from its constant. */
static const char *const status_names[] = {
	[PROTO_OK] = "ok",
	[PROTO_NEED_MORE] = "need more",
	[PROTO_ERR_VERSION] = "bad version",
	[PROTO_ERR_NO_METHODS] = "no methods offered",
	[PROTO_ERR_AUTH_VERSION] = "bad auth version",
	[PROTO_ERR_EMPTY_USERNAME] = "empty username",
	[PROTO_ERR_COMMAND] = "unknown command",
	[PROTO_ERR_RESERVED] = "reserved byte not zero",
	[PROTO_ERR_ATYP] = "unknown address type",
	[PROTO_ERR_EMPTY_NAME] = "empty domain name",
	[PROTO_ERR_BAD_NAME] = "NUL in domain name",
	[PROTO_ERR_TRUNCATED] = "truncated header",
	[PROTO_ERR_TOO_LONG] = "SOCKS4 field too long",
};

static const char *const rep_names[] = {
	[SOCKS_REP_SUCCEEDED] = "succeeded",
	[SOCKS_REP_GENERAL_FAILURE] = "general failure",
	[SOCKS_REP_NOT_ALLOWED] = "not allowed by ruleset",
	[SOCKS_REP_NETWORK_UNREACHABLE] = "network unreachable",
	[SOCKS_REP_HOST_UNREACHABLE] = "host unreachable",
	[SOCKS_REP_CONNECTION_REFUSED] = "connection refused",
	[SOCKS_REP_TTL_EXPIRED] = "TTL expired",
	[SOCKS_REP_COMMAND_NOT_SUPPORTED] = "command not supported",
	[SOCKS_REP_ATYP_NOT_SUPPORTED] = "address type not supported",
};

static const char *const cmd_names[] = {
	[SOCKS_CMD_CONNECT] = "connect",
	[SOCKS_CMD_BIND] = "bind",
	[SOCKS_CMD_UDP_ASSOCIATE] = "udp-associate",
};

const char *
proto_status_str(enum proto_status st)
{
	return STRNUM_NAME(status_names, st, "unknown status");
}

const char *
proto_rep_str(uint8_t rep)
{
	return STRNUM_NAME(rep_names, rep, "unassigned");
}

const char *
proto_cmd_str(uint8_t cmd)
{
	return STRNUM_NAME(cmd_names, cmd, "unknown");
}

int
proto_addr_to_sockaddr(const struct socks_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	union sockaddr_any sa;

	memset(ss, 0, sizeof(*ss));
	if (a->atyp != SOCKS_ATYP_IPV4 && a->atyp != SOCKS_ATYP_IPV6)
		return -1;
	addr_from_ip(&sa, a->atyp == SOCKS_ATYP_IPV4 ? AF_INET : AF_INET6, &a->ip, a->port);
	memcpy(ss, &sa, sizeof(sa));
	*len = addr_len(&sa);
	return 0;
}

/*
 * Unlike the reply encoders this keeps an IPv4-mapped address as IPv6: the
 * result may be handed back to sendto() on the AF_INET6 socket it came
 * from, which would refuse an AF_INET address. Unknown families give
 * 0.0.0.0:0, as in the replies.
 */
void
proto_addr_from_sockaddr(struct socks_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	a->atyp = SOCKS_ATYP_IPV4;
	if (sa != NULL && sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof(sin));
		memcpy(a->ip.ipv4, &sin.sin_addr, 4);
		a->port = ntohs(sin.sin_port);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, sa, sizeof(sin6));
		a->atyp = SOCKS_ATYP_IPV6;
		memcpy(a->ip.ipv6, &sin6.sin6_addr, 16);
		a->port = ntohs(sin6.sin6_port);
	}
}

void
proto_addr_format(const struct socks_addr *a, char *out, size_t cap)
{
	char host[4 * 255 + 1];

	if (cap == 0)
		return;
	switch (a->atyp) {
	case SOCKS_ATYP_IPV4:
		inet_ntop(AF_INET, a->ip.ipv4, host, sizeof(host));
		snprintf(out, cap, "%s:%u", host, (unsigned)a->port);
		break;
	case SOCKS_ATYP_IPV6:
		inet_ntop(AF_INET6, a->ip.ipv6, host, sizeof(host));
		snprintf(out, cap, "[%s]:%u", host, (unsigned)a->port);
		break;
	case SOCKS_ATYP_DOMAIN:
		/* Peer-chosen bytes headed for log lines (log_escape). */
		log_escape(a->name, strnlen(a->name, a->name_len), host, sizeof(host));
		snprintf(out, cap, "%s:%u", host, (unsigned)a->port);
		break;
	default:
		snprintf(out, cap, "?:%u", (unsigned)a->port);
		break;
	}
}

bool
proto_addr_is_unspecified(const struct socks_addr *a)
{
	static const uint8_t zero[16];

	if (a->atyp == SOCKS_ATYP_IPV4)
		return memcmp(a->ip.ipv4, zero, 4) == 0;
	if (a->atyp == SOCKS_ATYP_IPV6)
		return memcmp(a->ip.ipv6, zero, 16) == 0;
	return false;
}
