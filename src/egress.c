/*
 * egress: the outbound settings as words and values. One parser serves the
 * global directives, the clauses of rule lines and those of user lines, so
 * a setting reads and is checked the same wherever it is written; one
 * printer gives them back for `socks5d -T`. Drawing a source address from a
 * prefix is arithmetic on the caller's random bytes or on a keyed hash of
 * the user name: no I/O here.
 */
#include "egress.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>

#include "errbuf.h"
#include "strnum.h"

void
egress_init(struct egress *e)
{
	memset(e, 0, sizeof(*e));
	e->tos = -1;
	e->keepalive = -1;
	e->user_timeout_ms = -1;
}

bool
egress_is_empty(const struct egress *e)
{
	struct egress none;

	egress_init(&none);
	return egress_equal(e, &none);
}

static int
family_index(int family)
{
	return family == AF_INET6 ? EGRESS_V6 : EGRESS_V4;
}

/* --- parsing ---------------------------------------------------------- */

static const char *const family_names[2] = { "IPv4", "IPv6" };

/* The number s in lo..hi into *out; the message names the clause. */
static int
clause_number(const char *clause, const char *s, unsigned lo, unsigned hi, unsigned *out, char *err,
	size_t errlen)
{
	if (s == NULL) {
		errbuf_printf(err, errlen, "%s: missing value", clause);
		return -1;
	}
	switch (strnum_parse_uint(s, lo, hi, out)) {
	case STRNUM_OK:
		return 0;
	case STRNUM_RANGE:
		errbuf_printf(err, errlen, "%s: %s out of range %u..%u", clause, s, lo, hi);
		return -1;
	case STRNUM_EMPTY:
	case STRNUM_NOT_DECIMAL:
		break;
	}
	errbuf_printf(err, errlen, "%s: '%s' is not a number", clause, s);
	return -1;
}

static bool
is_mode_word(const char *w)
{
	return w != NULL && (strcmp(w, "random") == 0 || strcmp(w, "hash-user") == 0);
}

/* Zeroes the bits of a after prefix. */
static void
mask_host_bits(union sockaddr_any *a, unsigned prefix)
{
	uint8_t *ip = a->sa.sa_family == AF_INET6 ? a->sin6.sin6_addr.s6_addr
						  : (uint8_t *)&a->sin.sin_addr;
	size_t len = a->sa.sa_family == AF_INET6 ? 16 : 4;

	for (size_t i = 0; i < len; i++) {
		unsigned bit = (unsigned)i * 8;

		if (bit >= prefix)
			ip[i] = 0;
		else if (prefix - bit < 8)
			ip[i] &= (uint8_t)(0xffu << (8 - (prefix - bit)));
	}
}

/* "ADDR/LEN random|hash-user" (argv[1], argv[2]) into *s. */
static int
parse_prefix_source(char *const *argv, struct egress_source *s, char *err, size_t errlen)
{
	const char *slash = strchr(argv[1], '/');
	char ip[INET6_ADDRSTRLEN];
	size_t alen = (size_t)(slash - argv[1]);
	unsigned full, len;

	if (alen == 0 || alen >= sizeof(ip))
		goto bad;
	memcpy(ip, argv[1], alen);
	ip[alen] = '\0';
	if (addr_parse(ip, 0, &s->addr) < 0)
		goto bad;
	if (s->addr.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s->addr.sin6.sin6_addr)) {
		errbuf_printf(err, errlen, "external: write the IPv4 prefix of '%s' as IPv4",
			argv[1]);
		return -1;
	}
	full = s->addr.sa.sa_family == AF_INET6 ? 128 : 32;
	if (strnum_parse_uint(slash + 1, 0, full, &len) != STRNUM_OK)
		goto bad;
	if (len == 0 || len == full) {
		errbuf_printf(err, errlen,
			len == 0 ? "external: /0 is every address, not a prefix of this host"
				 : "external: '%s' holds one address: write the address alone",
			argv[1]);
		return -1;
	}
	if (!is_mode_word(argv[2])) {
		errbuf_printf(err, errlen,
			"external: expected random or hash-user after the prefix '%s'", argv[1]);
		return -1;
	}
	s->mode = strcmp(argv[2], "random") == 0 ? EGRESS_SRC_RANDOM : EGRESS_SRC_HASH_USER;
	s->prefix = (uint8_t)len;
	mask_host_bits(&s->addr, len);
	return 3;
bad:
	errbuf_printf(err, errlen, "external: bad prefix '%s' (expected ADDR/LEN)", argv[1]);
	return -1;
}

/* external ADDR | external PREFIX random|hash-user */
static int
parse_external(struct egress *e, char *const *argv, char *err, size_t errlen)
{
	struct egress_source s;
	int used, f;

	memset(&s, 0, sizeof(s));
	if (argv[1] == NULL) {
		errbuf_printf(err, errlen, "external: missing value");
		return -1;
	}
	if (strchr(argv[1], '/') != NULL) {
		if ((used = parse_prefix_source(argv, &s, err, errlen)) < 0)
			return -1;
	} else {
		if (addr_parse(argv[1], 0, &s.addr) < 0) {
			errbuf_printf(err, errlen,
				"external: bad address '%s' (expected a numeric IPv4 or IPv6 "
				"address)",
				argv[1]);
			return -1;
		}
		if (is_mode_word(argv[2])) {
			errbuf_printf(err, errlen,
				"external: %s needs a prefix (ADDR/LEN), not '%s'", argv[2],
				argv[1]);
			return -1;
		}
		s.mode = EGRESS_SRC_ADDR;
		s.prefix = s.addr.sa.sa_family == AF_INET6 ? 128 : 32;
		used = 2;
	}
	f = family_index(s.addr.sa.sa_family);
	if (e->src[f].mode != EGRESS_SRC_UNSET) {
		errbuf_printf(err, errlen, "external: a second %s source", family_names[f]);
		return -1;
	}
	e->src[f] = s;
	return used;
}

/* Linux's dev_valid_name, and nothing the config grammar would need to
 * quote, so the dump parses back. */
static bool
ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= EGRESS_IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '/' || *p == ':' || *p == '"' || *p == '#')
			return false;
	return true;
}

static int
parse_interface(struct egress *e, char *const *argv, char *err, size_t errlen)
{
	if (argv[1] == NULL) {
		errbuf_printf(err, errlen, "external-interface: missing value");
		return -1;
	}
	if (!ifname_ok(argv[1])) {
		errbuf_printf(err, errlen,
			"external-interface: bad interface name '%s' (1 to 15 characters, no "
			"'/', ':' or blanks)",
			argv[1]);
		return -1;
	}
	if (e->ifname[0]) {
		errbuf_printf(err, errlen, "duplicate 'external-interface'");
		return -1;
	}
	memcpy(e->ifname, argv[1], strlen(argv[1]) + 1);
	return 2;
}

static int
parse_keepalive(struct egress *e, char *const *argv, char *err, size_t errlen)
{
	unsigned v[3];

	if (e->keepalive >= 0) {
		errbuf_printf(err, errlen, "duplicate 'tcp-keepalive'");
		return -1;
	}
	if (argv[1] != NULL && strcmp(argv[1], "off") == 0) {
		e->keepalive = 0;
		return 2;
	}
	for (int i = 0; i < 3; i++) {
		unsigned hi = i == 2 ? EGRESS_KEEPALIVE_PROBES_MAX : EGRESS_KEEPALIVE_TIME_MAX;

		if (argv[i + 1] == NULL) {
			errbuf_printf(err, errlen,
				"tcp-keepalive: expected IDLE INTERVAL COUNT (seconds, seconds, "
				"probes) or off");
			return -1;
		}
		if (clause_number(argv[0], argv[i + 1], 1, hi, &v[i], err, errlen) < 0)
			return -1;
	}
	e->keepalive = 1;
	e->keepalive_idle = (uint16_t)v[0];
	e->keepalive_interval = (uint16_t)v[1];
	e->keepalive_count = (uint16_t)v[2];
	return 4;
}

/* socket-mark, ip-tos, tcp-user-timeout: one number each. */
static int
parse_number_clause(struct egress *e, char *const *argv, char *err, size_t errlen)
{
	unsigned v;

	if (strcmp(argv[0], "socket-mark") == 0) {
		if (e->has_mark)
			goto dup;
		if (clause_number(argv[0], argv[1], 0, UINT32_MAX, &v, err, errlen) < 0)
			return -1;
		e->has_mark = true;
		e->mark = v;
	} else if (strcmp(argv[0], "ip-tos") == 0) {
		if (e->tos >= 0)
			goto dup;
		if (clause_number(argv[0], argv[1], 0, 255, &v, err, errlen) < 0)
			return -1;
		if (v % 4 != 0) {
			errbuf_printf(err, errlen,
				"ip-tos: %u sets the low two bits, which are ECN's (the "
				"kernel's): use a multiple of 4 (DSCP times 4)",
				v);
			return -1;
		}
		e->tos = (int)v;
	} else {
		if (e->user_timeout_ms >= 0)
			goto dup;
		if (clause_number(argv[0], argv[1], 0, EGRESS_USER_TIMEOUT_MAX, &v, err, errlen) <
			0)
			return -1;
		e->user_timeout_ms = (int)v;
	}
	return 2;
dup:
	errbuf_printf(err, errlen, "duplicate '%s'", argv[0]);
	return -1;
}

static const char *const clause_names[] = { "external", "external-interface", "socket-mark",
	"ip-tos", "tcp-keepalive", "tcp-user-timeout" };
#define NCLAUSES (sizeof(clause_names) / sizeof(clause_names[0]))

bool
egress_is_clause(const char *word)
{
	for (size_t i = 0; word != NULL && i < NCLAUSES; i++)
		if (strcmp(word, clause_names[i]) == 0)
			return true;
	return false;
}

int
egress_parse_clause(struct egress *e, enum egress_context ctx, char *const *argv, char *err,
	size_t errlen)
{
	const char *w = argv[0];

	if (!egress_is_clause(w))
		return 0;
	if (strcmp(w, "external") == 0)
		return parse_external(e, argv, err, errlen);
	if (strcmp(w, "external-interface") == 0)
		return parse_interface(e, argv, err, errlen);
	if (ctx == EGRESS_IN_USER) {
		errbuf_printf(err, errlen,
			"%s: not a user option (external, external-interface); write it on a "
			"rule with 'user NAME'",
			w);
		return -1;
	}
	if (strcmp(w, "tcp-keepalive") == 0)
		return parse_keepalive(e, argv, err, errlen);
	return parse_number_clause(e, argv, err, errlen);
}

/* --- layers ----------------------------------------------------------- */

void
egress_merge(struct egress *dst, const struct egress *lower)
{
	if (lower == NULL)
		return;
	for (int f = 0; f < 2; f++)
		if (dst->src[f].mode == EGRESS_SRC_UNSET)
			dst->src[f] = lower->src[f];
	if (!dst->ifname[0])
		memcpy(dst->ifname, lower->ifname, sizeof(dst->ifname));
	if (!dst->has_mark) {
		dst->has_mark = lower->has_mark;
		dst->mark = lower->mark;
	}
	if (dst->tos < 0)
		dst->tos = lower->tos;
	if (dst->keepalive < 0) {
		dst->keepalive = lower->keepalive;
		dst->keepalive_idle = lower->keepalive_idle;
		dst->keepalive_interval = lower->keepalive_interval;
		dst->keepalive_count = lower->keepalive_count;
	}
	if (dst->user_timeout_ms < 0)
		dst->user_timeout_ms = lower->user_timeout_ms;
}

bool
egress_tcp_equal(const struct egress *a, const struct egress *b)
{
	if (a->keepalive != b->keepalive || a->user_timeout_ms != b->user_timeout_ms)
		return false;
	return a->keepalive != 1 ||
		(a->keepalive_idle == b->keepalive_idle &&
			a->keepalive_interval == b->keepalive_interval &&
			a->keepalive_count == b->keepalive_count);
}

static bool
source_equal(const struct egress_source *a, const struct egress_source *b)
{
	if (a->mode != b->mode)
		return false;
	return a->mode == EGRESS_SRC_UNSET ||
		(a->prefix == b->prefix && addr_ip_equal(&a->addr, &b->addr));
}

bool
egress_equal(const struct egress *a, const struct egress *b)
{
	return source_equal(&a->src[0], &b->src[0]) && source_equal(&a->src[1], &b->src[1]) &&
		strcmp(a->ifname, b->ifname) == 0 && a->has_mark == b->has_mark &&
		(!a->has_mark || a->mark == b->mark) && a->tos == b->tos && egress_tcp_equal(a, b);
}

/* --- printing --------------------------------------------------------- */

void
egress_dump(const struct egress *e, FILE *out, const char *before, const char *after)
{
	char ip[ADDR_STRLEN];

	for (int f = 0; f < 2; f++) {
		const struct egress_source *s = &e->src[f];

		if (s->mode == EGRESS_SRC_UNSET)
			continue;
		addr_ip_format(&s->addr, ip, sizeof(ip));
		if (s->mode == EGRESS_SRC_ADDR)
			fprintf(out, "%sexternal %s%s", before, ip, after);
		else
			fprintf(out, "%sexternal %s/%u %s%s", before, ip, s->prefix,
				s->mode == EGRESS_SRC_RANDOM ? "random" : "hash-user", after);
	}
	if (e->ifname[0])
		fprintf(out, "%sexternal-interface %s%s", before, e->ifname, after);
	if (e->has_mark)
		fprintf(out, "%ssocket-mark %u%s", before, (unsigned)e->mark, after);
	if (e->tos >= 0)
		fprintf(out, "%sip-tos %d%s", before, e->tos, after);
	if (e->keepalive == 0)
		fprintf(out, "%stcp-keepalive off%s", before, after);
	else if (e->keepalive == 1)
		fprintf(out, "%stcp-keepalive %u %u %u%s", before, e->keepalive_idle,
			e->keepalive_interval, e->keepalive_count, after);
	if (e->user_timeout_ms >= 0)
		fprintf(out, "%stcp-user-timeout %d%s", before, e->user_timeout_ms, after);
}

/* --- source addresses ------------------------------------------------- */

bool
egress_source_drawn(const struct egress *e, int family)
{
	enum egress_source_mode m = e->src[family_index(family)].mode;

	return m == EGRESS_SRC_RANDOM || m == EGRESS_SRC_HASH_USER;
}

/* 16 bytes from the keyed hash of the user name. */
static void
hash_user_bytes(const uint8_t key[SIPHASH_KEY_LEN], const char *user, uint8_t out[16])
{
	uint8_t msg[1 + 256];
	size_t n = user ? strnlen(user, 255) : 0;

	if (n)
		memcpy(msg + 1, user, n);
	for (uint8_t half = 0; half < 2; half++) {
		uint64_t h;

		msg[0] = half;
		h = siphash24(key, msg, n + 1);
		for (int i = 0; i < 8; i++)
			out[half * 8 + i] = (uint8_t)(h >> (8 * i));
	}
}

/* Puts bits into ip's host part (after prefix), then keeps off the
 * prefix's first address and, for IPv4, its last (when there are more than
 * two). */
static void
fill_host_bits(uint8_t *ip, size_t len, unsigned prefix, const uint8_t *bits, bool v4)
{
	bool zero = true, ones = true;
	unsigned hostbits = (unsigned)len * 8 - prefix;

	for (size_t i = 0; i < len; i++) {
		unsigned bit = (unsigned)i * 8;
		uint8_t m;

		if (bit + 8 <= prefix)
			continue;
		m = bit >= prefix ? 0xffu : (uint8_t)(0xffu >> (prefix - bit));
		ip[i] = (uint8_t)((ip[i] & ~m) | (bits[i] & m));
		zero = zero && (ip[i] & m) == 0;
		ones = ones && (ip[i] & m) == m;
	}
	if (hostbits < 2)
		return;
	if (zero)
		ip[len - 1] |= 1;
	else if (v4 && ones)
		ip[len - 1] &= (uint8_t)~1u;
}

bool
egress_source(const struct egress *e, int family, const uint8_t key[SIPHASH_KEY_LEN],
	const char *user, const uint8_t rnd[EGRESS_RANDOM_LEN], union sockaddr_any *out)
{
	const struct egress_source *s = &e->src[family_index(family)];
	uint8_t bits[16];
	bool v6 = family == AF_INET6;

	if (s->mode == EGRESS_SRC_UNSET)
		return false;
	*out = s->addr;
	addr_set_port(out, 0);
	if (s->mode == EGRESS_SRC_ADDR)
		return true;
	if (s->mode == EGRESS_SRC_RANDOM)
		memcpy(bits, rnd, sizeof(bits));
	else
		hash_user_bytes(key, user, bits);
	fill_host_bits(v6 ? out->sin6.sin6_addr.s6_addr : (uint8_t *)&out->sin.sin_addr,
		v6 ? 16 : 4, s->prefix, bits, !v6);
	return true;
}
