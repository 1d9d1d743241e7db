/*
 * proxyproto: the pure parser of HAProxy's PROXY protocol header (the
 * "proxy-protocol.txt" specification, §2.1 text version 1 and §2.2 binary
 * version 2). It turns whatever prefix of a connection's first bytes has
 * arrived into NEED_MORE, a named rejection, or the header's length and
 * addresses. Reading the socket, deciding whether the sender is trusted and
 * what to do with the addresses belong to the caller; no I/O, no malloc, no
 * globals, no logging here.
 *
 * Both versions are checked byte by byte as they arrive: a peer that is not
 * a PROXY sender is rejected at its first wrong byte, not after a timeout.
 */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "strnum.h"

/* §2.2: the v2 signature; it holds a NUL, so it is never a C string. */
static const uint8_t pp2_signature[] = {
	0x0D,
	0x0A,
	0x0D,
	0x0A,
	0x00,
	0x0D,
	0x0A,
	0x51,
	0x55,
	0x49,
	0x54,
	0x0A,
};
#define PP2_SIG_LEN sizeof(pp2_signature)
#define PP2_HEADER_LEN 16 /* signature, ver/cmd, family, length */
#define PP2_VERSION 0x2   /* high nibble of byte 13 */
#define PP2_CMD_LOCAL 0x0 /* health check from the proxy itself */
#define PP2_CMD_PROXY 0x1 /* relayed on behalf of a client */
/* Byte 14: address family (high nibble) and transport (low nibble). */
#define PP2_FAM_UNSPEC 0x00
#define PP2_FAM_TCP4 0x11
#define PP2_FAM_UDP4 0x12
#define PP2_FAM_TCP6 0x21
#define PP2_FAM_UDP6 0x22
#define PP2_FAM_UNIX_STREAM 0x31
#define PP2_FAM_UNIX_DGRAM 0x32
#define PP2_ADDR_LEN_INET 12  /* 2 * 4 address bytes + 2 * 2 port bytes */
#define PP2_ADDR_LEN_INET6 36 /* 2 * 16 + 2 * 2 */

/* §2.1: the v1 line and its fields. */
#define PP1_SIGNATURE "PROXY"
#define PP1_PROTO_TCP4 "TCP4"
#define PP1_PROTO_TCP6 "TCP6"
#define PP1_PROTO_UNKNOWN "UNKNOWN"
#define PP1_IPV4_MAX 15 /* 255.255.255.255 */
#define PP1_IPV6_MAX 39 /* eight groups of four hex digits */
#define PP1_PORT_MAX 5  /* 65535 */

/* --- version 2 ----------------------------------------------------------- */

static uint16_t
get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/*
 * §2.2: 16 fixed bytes, then "length" bytes of addresses and TLVs. Every
 * fixed byte is judged as soon as it is in view; the TLVs after the
 * addresses are skipped unread (we use none of them), but the whole length
 * is consumed so the SOCKS greeting starts right after.
 */
static enum proxyproto_status
parse_v2(const uint8_t *p, size_t len, struct proxyproto_result *r, size_t *consumed)
{
	size_t need, total;
	uint8_t cmd, fam;

	if (memcmp(p, pp2_signature, len < PP2_SIG_LEN ? len : PP2_SIG_LEN) != 0)
		return PROXYPROTO_ERR_SIGNATURE;
	if (len < PP2_SIG_LEN + 1)
		return PROXYPROTO_NEED_MORE;
	if (p[12] >> 4 != PP2_VERSION)
		return PROXYPROTO_ERR_VERSION;
	cmd = p[12] & 0x0f;
	if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY)
		return PROXYPROTO_ERR_COMMAND;
	if (len < PP2_SIG_LEN + 2)
		return PROXYPROTO_NEED_MORE;
	fam = p[13];
	r->version = 2;
	if (cmd == PP2_CMD_LOCAL) {
		/* The spec says LOCAL ignores the family byte entirely: the
		 * proxy talks for itself, whatever it put there. */
		r->local = true;
		need = 0;
	} else {
		switch (fam) {
		case PP2_FAM_UNSPEC:
			/* The proxy could not describe the client; keep the
			 * real peer, as the spec allows. */
			r->local = true;
			need = 0;
			break;
		case PP2_FAM_TCP4:
			need = PP2_ADDR_LEN_INET;
			break;
		case PP2_FAM_TCP6:
			need = PP2_ADDR_LEN_INET6;
			break;
		case PP2_FAM_UDP4:
		case PP2_FAM_UDP6:
		case PP2_FAM_UNIX_STREAM:
		case PP2_FAM_UNIX_DGRAM:
			/* Valid v2, but a SOCKS client over them is not TCP. */
		default:
			return PROXYPROTO_ERR_FAMILY;
		}
	}
	if (len < PP2_HEADER_LEN)
		return PROXYPROTO_NEED_MORE;
	if (get_be16(p + 14) < need)
		return PROXYPROTO_ERR_LENGTH;
	total = PP2_HEADER_LEN + get_be16(p + 14);
	if (len < total)
		return PROXYPROTO_NEED_MORE;

	if (!r->local) {
		/* src addr, dst addr, src port, dst port; all network order. */
		size_t alen = fam == PP2_FAM_TCP4 ? 4 : 16;
		int family = fam == PP2_FAM_TCP4 ? AF_INET : AF_INET6;

		p += PP2_HEADER_LEN;
		addr_from_ip(&r->src, family, p, get_be16(p + 2 * alen));
		addr_from_ip(&r->dst, family, p + alen, get_be16(p + 2 * alen + 2));
	}
	*consumed = total;
	return PROXYPROTO_OK;
}

/* --- version 1 ----------------------------------------------------------- */

/*
 * Each field is checked as a prefix while it arrives (so "PROXY TCP4 ::1"
 * fails at the ':'), and once more whole when its delimiter shows up. A
 * prefix check is always implied by the whole check of a longer field, so
 * the two cannot disagree.
 */
typedef bool (*pp1_field_fn)(const uint8_t *f, size_t n, bool whole);

struct pp1 {
	const uint8_t *p;
	size_t len;
	size_t pos; /* next byte to look at */
};

static bool
is_digit(uint8_t ch)
{
	return ch >= '0' && ch <= '9';
}

static bool
is_xdigit(uint8_t ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool
pp1_proto_ok(const uint8_t *f, size_t n, bool whole)
{
	static const char *const names[] = {
		PP1_PROTO_TCP4,
		PP1_PROTO_TCP6,
		PP1_PROTO_UNKNOWN,
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t nl = strlen(names[i]);
		if (n <= nl && memcmp(f, names[i], n) == 0 && (!whole || n == nl))
			return true;
	}
	return false;
}

/* Decimal 0..max without leading zeros (§2.1 forbids them to rule out
 * octal readings); signs, blanks and the rest are strnum's to refuse. */
static bool
decimal_ok(const uint8_t *f, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (n > 1 && f[0] == '0')
		return false;
	if (strnum_parse_u64_span((const char *)f, n, 0, max, &v) != STRNUM_OK)
		return false;
	if (out)
		*out = v;
	return true;
}

static bool
pp1_port_ok(const uint8_t *f, size_t n, bool whole)
{
	return n >= 1 && n <= PP1_PORT_MAX && decimal_ok(f, n, 65535, NULL);
}

/* Exactly four decimal octets 0..255 without leading zeros, single dots. */
static bool
pp1_ipv4_ok(const uint8_t *f, size_t n, bool whole)
{
	size_t start = 0, dots = 0;

	if (n > PP1_IPV4_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && f[i] != '.')
			continue;
		/* Group f[start..i): empty only while still arriving. */
		if (i - start == 0 && (i < n || whole))
			return false;
		if (i > start && !decimal_ok(f + start, i - start, 255, NULL))
			return false;
		if (i < n && ++dots > 3)
			return false;
		start = i + 1;
	}
	return !whole || dots == 3;
}

/* Hex groups of at most four digits and colons; inet_pton has the last
 * word on the whole (one "::", 128 bits). Dotted IPv4 tails are not part
 * of the §2.1 format. */
static bool
pp1_ipv6_ok(const uint8_t *f, size_t n, bool whole)
{
	size_t group = 0, colons = 0;
	bool double_colon = false;
	char text[PP1_IPV6_MAX + 1];
	struct in6_addr a;

	if (n > PP1_IPV6_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (f[i] == ':') {
			if (++colons == 2) {
				if (double_colon)
					return false;
				double_colon = true;
			} else if (colons > 2) {
				return false;
			}
			group = 0;
		} else if (is_xdigit(f[i])) {
			if (++group > 4)
				return false;
			colons = 0;
		} else {
			return false;
		}
	}
	if (!whole)
		return true;
	memcpy(text, f, n);
	text[n] = '\0';
	return inet_pton(AF_INET6, text, &a) == 1;
}

/* The next byte, or why there is none: the 107-byte bound first, so a
 * line that cannot end in time fails even when more bytes are buffered. */
static enum proxyproto_status
pp1_peek(const struct pp1 *c, uint8_t *ch)
{
	if (c->pos >= PROXYPROTO_V1_MAX)
		return PROXYPROTO_ERR_TOO_LONG;
	if (c->pos >= c->len)
		return PROXYPROTO_NEED_MORE;
	*ch = c->p[c->pos];
	return PROXYPROTO_OK;
}

static enum proxyproto_status
pp1_expect(struct pp1 *c, uint8_t want)
{
	enum proxyproto_status st;
	uint8_t ch;

	if ((st = pp1_peek(c, &ch)) != PROXYPROTO_OK)
		return st;
	if (ch != want)
		return PROXYPROTO_ERR_SYNTAX;
	c->pos++;
	return PROXYPROTO_OK;
}

/*
 * One field up to (not including) the next SP or CR. An empty field means
 * a doubled, leading or trailing space: syntax. Control bytes (a bare LF
 * among them) are syntax too; printable bytes that cannot continue the
 * field are the field's own error, bad.
 */
static enum proxyproto_status
pp1_field(struct pp1 *c, pp1_field_fn ok, enum proxyproto_status bad, size_t *start)
{
	enum proxyproto_status st;
	uint8_t ch;

	*start = c->pos;
	for (;;) {
		if ((st = pp1_peek(c, &ch)) != PROXYPROTO_OK)
			return st;
		if (ch == ' ' || ch == '\r')
			break;
		if (ch < 0x21 || ch > 0x7e)
			return PROXYPROTO_ERR_SYNTAX;
		if (!ok(c->p + *start, c->pos + 1 - *start, false))
			return bad;
		c->pos++;
	}
	if (c->pos == *start)
		return PROXYPROTO_ERR_SYNTAX;
	if (!ok(c->p + *start, c->pos - *start, true))
		return bad;
	return PROXYPROTO_OK;
}

static enum proxyproto_status
pp1_crlf(struct pp1 *c)
{
	enum proxyproto_status st;

	if ((st = pp1_expect(c, '\r')) != PROXYPROTO_OK)
		return st;
	return pp1_expect(c, '\n');
}

/* §2.1: after "UNKNOWN" the sender may add anything up to the CRLF and
 * the receiver ignores it. We still hold it to printable US-ASCII (what
 * the line is defined as) and to the 107-byte bound. */
static enum proxyproto_status
pp1_skip_unknown(struct pp1 *c)
{
	enum proxyproto_status st;
	uint8_t ch;

	if ((st = pp1_peek(c, &ch)) != PROXYPROTO_OK)
		return st;
	if (ch == ' ') {
		c->pos++;
		for (;;) {
			if ((st = pp1_peek(c, &ch)) != PROXYPROTO_OK)
				return st;
			if (ch == '\r')
				break;
			if (ch < 0x20 || ch > 0x7e)
				return PROXYPROTO_ERR_SYNTAX;
			c->pos++;
		}
	}
	return pp1_crlf(c);
}

/* The SP before a field, then the field (a bad one: PROXYPROTO_ERR_ADDRESS). */
static enum proxyproto_status
pp1_next_field(struct pp1 *c, pp1_field_fn ok, size_t *start)
{
	enum proxyproto_status st;

	if ((st = pp1_expect(c, ' ')) != PROXYPROTO_OK)
		return st;
	return pp1_field(c, ok, PROXYPROTO_ERR_ADDRESS, start);
}

/* One side's address and port fields, already checked whole, into *out.
 * The family follows from the text: a TCP4 field has only digits and
 * dots, a TCP6 one only hex digits and colons. */
static bool
pp1_endpoint(const uint8_t *ip, size_t ip_len, const uint8_t *port, size_t port_len,
	union sockaddr_any *out)
{
	char text[PP1_IPV6_MAX + 1];
	uint64_t v;

	if (ip_len >= sizeof(text) || !decimal_ok(port, port_len, 65535, &v))
		return false;
	memcpy(text, ip, ip_len);
	text[ip_len] = '\0';
	return addr_parse(text, (uint16_t)v, out) == 0;
}

/*
 * §2.1: "PROXY" SP proto SP src SP dst SP sport SP dport CRLF, every
 * separator exactly one space, at most 107 bytes with the CRLF.
 */
static enum proxyproto_status
parse_v1(const uint8_t *p, size_t len, struct proxyproto_result *r, size_t *consumed)
{
	struct pp1 c = { .p = p, .len = len, .pos = 0 };
	size_t sig_len = strlen(PP1_SIGNATURE), f_proto, f_src, f_dst, f_sport, f_dport;
	enum proxyproto_status st;
	pp1_field_fn addr_ok;

	if (memcmp(p, PP1_SIGNATURE, len < sig_len ? len : sig_len) != 0)
		return PROXYPROTO_ERR_SIGNATURE;
	if (len < sig_len)
		return PROXYPROTO_NEED_MORE;
	c.pos = sig_len;
	if ((st = pp1_expect(&c, ' ')) != PROXYPROTO_OK)
		return st;
	if ((st = pp1_field(&c, pp1_proto_ok, PROXYPROTO_ERR_FAMILY, &f_proto)) != PROXYPROTO_OK)
		return st;
	r->version = 1;
	if (c.pos - f_proto == strlen(PP1_PROTO_UNKNOWN)) {
		/* The real peer stands; whatever follows is not ours to read. */
		if ((st = pp1_skip_unknown(&c)) != PROXYPROTO_OK)
			return st;
		r->local = true;
		*consumed = c.pos;
		return PROXYPROTO_OK;
	}
	addr_ok = p[f_proto + 3] == '6' ? pp1_ipv6_ok : pp1_ipv4_ok;

	if ((st = pp1_next_field(&c, addr_ok, &f_src)) != PROXYPROTO_OK ||
		(st = pp1_next_field(&c, addr_ok, &f_dst)) != PROXYPROTO_OK ||
		(st = pp1_next_field(&c, pp1_port_ok, &f_sport)) != PROXYPROTO_OK ||
		(st = pp1_next_field(&c, pp1_port_ok, &f_dport)) != PROXYPROTO_OK ||
		(st = pp1_crlf(&c)) != PROXYPROTO_OK)
		return st;

	/* Every field was checked whole above. Field ends are the starts of
	 * the following fields minus the space (minus CRLF for the last). */
	r->local = false;
	if (!pp1_endpoint(p + f_src, f_dst - 1 - f_src, p + f_sport, f_dport - 1 - f_sport,
		    &r->src) ||
		!pp1_endpoint(p + f_dst, f_sport - 1 - f_dst, p + f_dport, c.pos - 2 - f_dport,
			&r->dst))
		return PROXYPROTO_ERR_ADDRESS;
	*consumed = c.pos;
	return PROXYPROTO_OK;
}

/* --- entry points -------------------------------------------------------- */

enum proxyproto_status
proxyproto_parse(const uint8_t *p, size_t len, struct proxyproto_result *out, size_t *consumed)
{
	struct proxyproto_result r;
	enum proxyproto_status st;

	*consumed = 0;
	if (len == 0)
		return PROXYPROTO_NEED_MORE;
	/* Parse into a zeroed copy so *out changes only on success and the
	 * unused parts of the address unions are always zero. */
	memset(&r, 0, sizeof(r));
	if (p[0] == pp2_signature[0])
		st = parse_v2(p, len, &r, consumed);
	else
		st = parse_v1(p, len, &r, consumed);
	if (st == PROXYPROTO_OK)
		*out = r;
	return st;
}

static const char *const status_names[] = {
	[PROXYPROTO_OK] = "ok",
	[PROXYPROTO_NEED_MORE] = "need more",
	[PROXYPROTO_ERR_SIGNATURE] = "no PROXY protocol signature",
	[PROXYPROTO_ERR_VERSION] = "unsupported PROXY protocol version",
	[PROXYPROTO_ERR_COMMAND] = "unknown PROXY v2 command",
	[PROXYPROTO_ERR_FAMILY] = "unsupported address family or protocol",
	[PROXYPROTO_ERR_LENGTH] = "PROXY v2 length too short for its family",
	[PROXYPROTO_ERR_SYNTAX] = "malformed PROXY v1 line",
	[PROXYPROTO_ERR_ADDRESS] = "bad address or port in PROXY v1 line",
	[PROXYPROTO_ERR_TOO_LONG] = "PROXY v1 line longer than 107 bytes",
};

const char *
proxyproto_status_str(enum proxyproto_status st)
{
	return STRNUM_NAME(status_names, st, "unknown status");
}
