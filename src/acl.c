/*
 * acl: parses client and request rules into a list and answers "allow or
 * deny" for a client address or a request, first match wins. Pure: the
 * caller resolves names, reads the config file and logs; this module only
 * parses words, compares and prints.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acl.h"
#include "dns.h"
#include "errbuf.h"
#include "strnum.h"

/* One item of a request rule's `to` list. */
struct acl_target {
	enum {
		ACL_TARGET_ALL,    /* `all`: matches without naming anything */
		ACL_TARGET_CIDR,   /* checked against dst_addr */
		ACL_TARGET_DOMAIN, /* checked against dst_name */
	} kind;
	struct acl_cidr cidr; /* ACL_TARGET_CIDR */
	char *domain;         /* ACL_TARGET_DOMAIN: lower case, no trailing dot */
};

/* Which selectors a request rule has; also the "seen" set while parsing. */
#define SEL_ALL 0x01u
#define SEL_FROM 0x02u
#define SEL_TO 0x04u
#define SEL_PORT 0x08u
#define SEL_CMD 0x10u
#define SEL_USER 0x20u

/* A request rule; a client rule is one with only SEL_FROM (at least one
 * network), checked against the client address alone. */
struct acl_request_rule {
	bool allow;
	int line;
	unsigned sel;          /* SEL_* present */
	struct acl_cidr *from; /* SEL_FROM */
	size_t nfrom;
	struct acl_target *to; /* SEL_TO */
	size_t nto;
	uint16_t port_lo, port_hi; /* SEL_PORT, inclusive */
	unsigned cmds;             /* SEL_CMD: ACL_CMD_* mask */
	char **users;              /* SEL_USER */
	size_t nusers;
	struct acl_via *via;   /* `via` clause, NULL: direct */
	bool resolve_given;    /* a `resolve` clause was given */
	struct egress *egress; /* outbound clauses (allow rules), or NULL */
};

struct acl {
	struct acl_request_rule *client; /* client rules, in config order */
	size_t nclient;
	struct acl_request_rule *req; /* in config order */
	size_t nreq;
};

/* RFC 1929 §2: ULEN is one byte, so longer names can never authenticate. */
#define ACL_USER_MAX 255

/* --- CIDR ---------------------------------------------------------------- */

/* Zeroes the bits after prefix so equal networks compare equal and a
 * match is a plain prefix compare. */
static void
cidr_mask(struct acl_cidr *c)
{
	size_t len = c->family == AF_INET ? 4 : 16;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned bit = (unsigned)i * 8;

		if (bit >= c->prefix)
			c->addr[i] = 0;
		else if (c->prefix - bit < 8)
			c->addr[i] &= (uint8_t)(0xffu << (8 - (c->prefix - bit)));
	}
}

/* Parses "all", "ADDR" or "ADDR/LEN" with a message naming the problem. */
static int
cidr_parse(const char *s, struct acl_cidr *out, char *err, size_t errlen)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned maxlen, len;
	enum strnum_status st;
	const char *p;

	memset(out, 0, sizeof(*out));
	if (strcmp(s, "all") == 0) {
		out->any = true;
		return 0;
	}
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		maxlen = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		maxlen = 128;
	} else {
		goto bad;
	}
	len = maxlen;
	if (slash != NULL) {
		p = slash + 1;
		st = strnum_parse_uint(p, 0, maxlen, &len);
		if (st == STRNUM_RANGE) {
			errbuf_printf(err, errlen, "prefix length %s out of range for %s", p,
				out->family == AF_INET ? "IPv4" : "IPv6");
			return -1;
		}
		if (st != STRNUM_OK)
			goto bad;
	}
	out->prefix = (uint8_t)len;
	/* ::ffff:a.b.c.d/96+n is the IPv4 network a.b.c.d/n: store it as
	 * IPv4 so it matches IPv4 and mapped addresses alike. */
	if (out->family == AF_INET6 && out->prefix >= 96 &&
		memcmp(out->addr, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	cidr_mask(out);
	return 0;
bad:
	errbuf_printf(err, errlen, "bad CIDR '%s'", s);
	return -1;
}

int
acl_parse_cidr(const char *s, struct acl_cidr *out)
{
	return cidr_parse(s, out, NULL, 0);
}

bool
acl_cidr_match(const struct acl_cidr *c, const union sockaddr_any *a)
{
	const uint8_t *ip;
	int family;
	unsigned full, rest;

	if (a == NULL)
		return false;
	if (a->sa.sa_family == AF_INET) {
		family = AF_INET;
		ip = (const uint8_t *)&a->sin.sin_addr;
	} else if (a->sa.sa_family == AF_INET6) {
		ip = a->sin6.sin6_addr.s6_addr;
		/* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d;
		 * they are IPv4 clients and must meet IPv4 rules. */
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr)) {
			family = AF_INET;
			ip += 12;
		} else {
			family = AF_INET6;
		}
	} else {
		return false;
	}
	if (c->any)
		return true;
	if (c->family != family)
		return false;
	full = c->prefix / 8u;
	rest = c->prefix % 8u;
	if (memcmp(ip, c->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return (ip[full] & (uint8_t)(0xffu << (8 - rest))) == c->addr[full];
}

/* Prints the CIDR back as parsed: "all", a bare host address, or ADDR/LEN. */
static void
cidr_print(const struct acl_cidr *c, FILE *out)
{
	char buf[INET6_ADDRSTRLEN];

	if (c->any) {
		fputs("all", out);
		return;
	}
	if (inet_ntop(c->family, c->addr, buf, sizeof(buf)) == NULL)
		buf[0] = '\0';
	if (c->prefix == (c->family == AF_INET ? 32 : 128))
		fputs(buf, out);
	else
		fprintf(out, "%s/%u", buf, (unsigned)c->prefix);
}

/* --- domains ------------------------------------------------------------- */

/* Length of name without one trailing dot. */
static size_t
domain_len(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && name[n - 1] == '.' ? n - 1 : n;
}

bool
acl_domain_match(const char *pattern, const char *name)
{
	size_t plen, nlen;

	if (pattern == NULL || name == NULL)
		return false;
	nlen = domain_len(name);
	if (pattern[0] == '*' && pattern[1] == '.') {
		/* ".example.com" must end the name with at least one
		 * character before it: a.example.com, not example.com nor
		 * badexample.com. */
		pattern++;
		plen = domain_len(pattern);
		if (plen <= 1 || nlen <= plen)
			return false;
		return strncasecmp(name + nlen - plen, pattern, plen) == 0;
	}
	plen = domain_len(pattern);
	return plen == nlen && plen > 0 && strncasecmp(name, pattern, plen) == 0;
}

/* Checks `example.com` or `*.example.com` (one trailing dot allowed): labels
 * of letters, digits, '-' and '_' (SRV-style names) within the RFC 1035
 * lengths, as dns_check_name has them. Returns the normalized copy (lower case, no trailing dot), or
 * NULL with a message. */
static char *
domain_parse(const char *s, char *err, size_t errlen)
{
	const char *name = s;
	size_t len, i;
	char *copy;

	if (name[0] == '*' && name[1] == '.')
		name += 2;
	/* The same rules a name must pass to be looked up at all. */
	if (dns_check_name(name) != DNS_OK)
		goto bad;
	len = domain_len(name);
	len += (size_t)(name - s);
	copy = malloc(len + 1);
	if (copy == NULL) {
		errbuf_printf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < len; i++)
		copy[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
	copy[len] = '\0';
	return copy;
bad:
	errbuf_printf(err, errlen, "bad domain '%s'", s);
	return NULL;
}

/* A `to` item is an address when it could only be one: it has a '/' or
 * ':', or is all digits and dots. Anything else is a domain, so a typo in
 * an address gets "bad CIDR" and a typo in a name gets "bad domain". */
static bool
looks_like_address(const char *s)
{
	return strpbrk(s, "/:") != NULL || strspn(s, "0123456789.") == strlen(s);
}

/* --- lists --------------------------------------------------------------- */

/* Calls fn for each item of the comma list s, in order, on a copy (argv
 * stays intact for the caller's messages). Empty items are an error naming
 * the selector. */
typedef int (*list_item_fn)(const char *item, void *arg, char *err, size_t errlen);

static int
list_each(const char *sel, const char *s, list_item_fn fn, void *arg, char *err, size_t errlen)
{
	char *copy = strdup(s), *p, *comma;
	int ret = -1;

	if (copy == NULL) {
		errbuf_printf(err, errlen, "out of memory");
		return -1;
	}
	for (p = copy;; p = comma + 1) {
		comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		if (*p == '\0') {
			errbuf_printf(err, errlen, "empty item in '%s' list", sel);
			goto out;
		}
		if (fn(p, arg, err, errlen) != 0)
			goto out;
		if (comma == NULL)
			break;
	}
	ret = 0;
out:
	free(copy);
	return ret;
}

/* Returns arr grown by one slot holding a copy of item (*n counts it), or
 * NULL with "out of memory" in err and arr untouched. Lists are short, so
 * growing one at a time is fine. */
static void *
array_append(void *arr, size_t *n, const void *item, size_t sz, char *err, size_t errlen)
{
	char *grown = realloc(arr, (*n + 1) * sz);

	if (grown == NULL) {
		errbuf_printf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(grown + *n * sz, item, sz);
	(*n)++;
	return grown;
}

static int
from_item(const char *item, void *arg, char *err, size_t errlen)
{
	struct acl_request_rule *r = arg;
	struct acl_cidr c, *grown;

	if (cidr_parse(item, &c, err, errlen) != 0)
		return -1;
	if ((grown = array_append(r->from, &r->nfrom, &c, sizeof(c), err, errlen)) == NULL)
		return -1;
	r->from = grown;
	return 0;
}

static int
to_item(const char *item, void *arg, char *err, size_t errlen)
{
	struct acl_request_rule *r = arg;
	struct acl_target t, *grown;

	memset(&t, 0, sizeof(t));
	if (strcmp(item, "all") == 0) {
		t.kind = ACL_TARGET_ALL;
	} else if (strcasecmp(item, "all") == 0) {
		/* Keywords are lower case, so "ALL" would be a host name
		 * and `deny to ALL` would quietly deny almost nothing. */
		errbuf_printf(err, errlen,
			"ambiguous target '%s' (use all, or all. for a host "
			"named all)",
			item);
		return -1;
	} else if (looks_like_address(item)) {
		t.kind = ACL_TARGET_CIDR;
		if (cidr_parse(item, &t.cidr, err, errlen) != 0)
			return -1;
	} else {
		t.kind = ACL_TARGET_DOMAIN;
		t.domain = domain_parse(item, err, errlen);
		if (t.domain == NULL)
			return -1;
	}
	if ((grown = array_append(r->to, &r->nto, &t, sizeof(t), err, errlen)) == NULL) {
		free(t.domain);
		return -1;
	}
	r->to = grown;
	return 0;
}

/* A keyword of a rule and the bit it stands for. */
struct acl_word {
	const char *name;
	unsigned bit;
};

/* cmd values, in dump order; then the selectors. */
static const struct acl_word acl_cmds[] = {
	{ "connect", ACL_CMD_CONNECT },
	{ "bind", ACL_CMD_BIND },
	{ "udp", ACL_CMD_UDP },
};
#define ACL_NCMDS (sizeof(acl_cmds) / sizeof(acl_cmds[0]))

static const struct acl_word acl_selectors[] = {
	{ "all", SEL_ALL },
	{ "from", SEL_FROM },
	{ "to", SEL_TO },
	{ "port", SEL_PORT },
	{ "cmd", SEL_CMD },
	{ "user", SEL_USER },
};
#define ACL_NSELECTORS (sizeof(acl_selectors) / sizeof(acl_selectors[0]))

/* The bit word stands for in t[0..n), or 0 when it is none of them. */
static unsigned
word_bit(const struct acl_word *t, size_t n, const char *word)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(word, t[i].name) == 0)
			return t[i].bit;
	return 0;
}

static int
cmd_item(const char *item, void *arg, char *err, size_t errlen)
{
	struct acl_request_rule *r = arg;
	unsigned cmd = word_bit(acl_cmds, ACL_NCMDS, item);

	if (cmd == 0) {
		errbuf_printf(err, errlen, "unknown command '%s' (expected connect, bind, udp)",
			item);
		return -1;
	}
	r->cmds |= cmd;
	return 0;
}

/* Names must print back into a config word: the config grammar has no
 * escape for '"', and control characters would break the line. */
static int
user_item(const char *item, void *arg, char *err, size_t errlen)
{
	struct acl_request_rule *r = arg;
	char **grown, *copy;
	const unsigned char *p;

	for (p = (const unsigned char *)item; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '"')
			break;
	}
	if (*p != '\0' || strlen(item) > ACL_USER_MAX) {
		errbuf_printf(err, errlen, "bad user name '%s'", item);
		return -1;
	}
	if ((copy = strdup(item)) == NULL) {
		errbuf_printf(err, errlen, "out of memory");
		return -1;
	}
	if ((grown = array_append(r->users, &r->nusers, &copy, sizeof(copy), err, errlen)) ==
		NULL) {
		free(copy);
		return -1;
	}
	r->users = grown;
	return 0;
}

/* Parses "N" or "N-M", each 1..65535, N <= M. */
static int
port_parse(const char *s, struct acl_request_rule *r, char *err, size_t errlen)
{
	const char *dash = strchr(s, '-');
	const char *parts[2];
	uint64_t v[2] = { 0, 0 };
	size_t n = dash ? 2 : 1, i;

	parts[0] = s;
	parts[1] = dash ? dash + 1 : NULL;
	for (i = 0; i < n; i++) {
		const char *p = parts[i];
		size_t plen = (i == 0 && dash) ? (size_t)(dash - s) : strlen(p);

		switch (strnum_parse_u64_span(p, plen, 1, 65535, &v[i])) {
		case STRNUM_OK:
			break;
		case STRNUM_RANGE:
			errbuf_printf(err, errlen, "port %.*s out of range (1-65535)", (int)plen,
				p);
			return -1;
		case STRNUM_EMPTY:
		case STRNUM_NOT_DECIMAL:
			errbuf_printf(err, errlen, "bad port '%s'", s);
			return -1;
		}
	}
	if (n == 1)
		v[1] = v[0];
	if (v[0] > v[1]) {
		errbuf_printf(err, errlen, "bad port range '%s'", s);
		return -1;
	}
	r->port_lo = (uint16_t)v[0];
	r->port_hi = (uint16_t)v[1];
	return 0;
}

/* --- clauses: how what a rule allows leaves ------------------------------ */

static int
via_item(const char *item, void *arg, char *err, size_t errlen)
{
	struct acl_via *v = arg;
	struct upstream *u;

	if (v->n == ACL_VIA_MAX) {
		errbuf_printf(err, errlen, "at most %d parents in a via list", ACL_VIA_MAX);
		return -1;
	}
	u = &v->hop[v->n];
	if (upstream_parse(item, u, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->hop[i].label, u->label) == 0) {
			errbuf_printf(err, errlen, "%s is listed twice in via", u->label);
			return -1;
		}
	v->n++;
	return 0;
}

/* `via LIST` or `resolve local|parent` (val NULL: the line ended); returns
 * 1 when word is neither. */
static int
clause_parse(struct acl_request_rule *r, const char *word, const char *val, char *err,
	size_t errlen)
{
	if (strcmp(word, "resolve") != 0 && strcmp(word, "via") != 0)
		return 1;
	if (val == NULL) {
		errbuf_printf(err, errlen, "missing value after '%s'", word);
		return -1;
	}
	if (strcmp(word, "resolve") == 0) {
		if (r->resolve_given) {
			errbuf_printf(err, errlen, "duplicate clause 'resolve'");
			return -1;
		}
		r->resolve_given = true;
		if (strcmp(val, "local") != 0 && strcmp(val, "parent") != 0) {
			errbuf_printf(err, errlen, "expected resolve local or resolve parent");
			return -1;
		}
		if (!r->via && !(r->via = calloc(1, sizeof(*r->via)))) {
			errbuf_printf(err, errlen, "out of memory");
			return -1;
		}
		r->via->resolve_local = strcmp(val, "local") == 0;
		return 0;
	}
	if (r->via && r->via->n) {
		errbuf_printf(err, errlen, "duplicate clause 'via'");
		return -1;
	}
	if (!r->via && !(r->via = calloc(1, sizeof(*r->via)))) {
		errbuf_printf(err, errlen, "out of memory");
		return -1;
	}
	return list_each(word, val, via_item, r->via, err, errlen);
}

/* Whether some hop of v can carry command bit cmd. */
static bool
via_can(const struct acl_via *v, unsigned cmd)
{
	static const uint8_t socks_cmd[] = { [ACL_CMD_CONNECT] = SOCKS_CMD_CONNECT,
		[ACL_CMD_BIND] = SOCKS_CMD_BIND,
		[ACL_CMD_UDP] = SOCKS_CMD_UDP_ASSOCIATE };

	for (size_t i = 0; i < v->n; i++)
		if (upstream_can(&v->hop[i], socks_cmd[cmd]))
			return true;
	return false;
}

/* The combinations a rule's clauses cannot have. */
static int
clause_check(struct acl_request_rule *r, char *err, size_t errlen)
{
	if (!r->via)
		return 0;
	if (!r->allow) {
		errbuf_printf(err, errlen,
			"a deny rule sends nothing anywhere: via and resolve "
			"belong on allow rules");
		return -1;
	}
	if (r->via->n == 0) {
		errbuf_printf(err, errlen, "resolve without via");
		return -1;
	}
	for (size_t i = 0; i < ACL_NCMDS; i++) {
		unsigned bit = acl_cmds[i].bit;

		if ((r->sel & SEL_CMD) && (r->cmds & bit) && !via_can(r->via, bit)) {
			errbuf_printf(err, errlen,
				"cmd %s: no parent in the via list can carry it (http carries "
				"connect; socks4 connect and bind; socks5 and direct all)",
				acl_cmds[i].name);
			return -1;
		}
	}
	return 0;
}

/* --- rules --------------------------------------------------------------- */

static int
parse_verdict(char **argv, bool *allow, char *err, size_t errlen)
{
	if (argv != NULL && argv[0] != NULL && strcmp(argv[0], "allow") == 0)
		*allow = true;
	else if (argv != NULL && argv[0] != NULL && strcmp(argv[0], "deny") == 0)
		*allow = false;
	else {
		errbuf_printf(err, errlen, "expected allow or deny");
		return -1;
	}
	return 0;
}

static void
request_rule_clear(struct acl_request_rule *r)
{
	size_t i;

	free(r->from);
	for (i = 0; i < r->nto; i++)
		free(r->to[i].domain);
	free(r->to);
	for (i = 0; i < r->nusers; i++)
		free(r->users[i]);
	free(r->users);
	free(r->via);
	free(r->egress);
}

struct acl *
acl_new(void)
{
	return calloc(1, sizeof(struct acl));
}

static void
rules_free(struct acl_request_rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++)
		request_rule_clear(&rules[i]);
	free(rules);
}

/* Appends the parsed rule r to rules[0..*n); when that fails, r is cleared
 * and "out of memory" is in err. */
static int
rules_append(struct acl_request_rule **rules, size_t *n, struct acl_request_rule *r, char *err,
	size_t errlen)
{
	struct acl_request_rule *grown = array_append(*rules, n, r, sizeof(*r), err, errlen);

	if (grown == NULL) {
		request_rule_clear(r);
		return -1;
	}
	*rules = grown;
	return 0;
}

void
acl_free(struct acl *a)
{
	if (a == NULL)
		return;
	rules_free(a->client, a->nclient);
	rules_free(a->req, a->nreq);
	free(a);
}

/* Each word is one network (no comma lists: `client allow A B`). */
int
acl_add_client_rule(struct acl *a, char **argv, int line, char *err, size_t errlen)
{
	struct acl_request_rule r;

	memset(&r, 0, sizeof(r));
	r.line = line;
	r.sel = SEL_FROM;
	if (parse_verdict(argv, &r.allow, err, errlen) != 0)
		return -1;
	if (argv[1] == NULL) {
		errbuf_printf(err, errlen, "missing value after '%s'", argv[0]);
		return -1;
	}
	for (int i = 1; argv[i] != NULL; i++) {
		if (from_item(argv[i], &r, err, errlen) != 0) {
			request_rule_clear(&r);
			return -1;
		}
	}
	return rules_append(&a->client, &a->nclient, &r, err, errlen);
}

size_t
acl_client_rule_count(const struct acl *a)
{
	return a->nclient;
}

/* An outbound clause of a request rule at argv (egress's grammar). Returns
 * the words it took, or -1 with the message in err. */
static int
rule_clause(struct acl_request_rule *r, char **argv, char *err, size_t errlen)
{
	if (r->egress == NULL) {
		if ((r->egress = malloc(sizeof(*r->egress))) == NULL) {
			errbuf_printf(err, errlen, "out of memory");
			return -1;
		}
		egress_init(r->egress);
	}
	return egress_parse_clause(r->egress, EGRESS_IN_RULE, argv, err, errlen);
}

/* Whether every `to` item is a network of the other family than f's. */
static bool
to_only_family(const struct acl_request_rule *r, int family)
{
	if (r->nto == 0)
		return false;
	for (size_t i = 0; i < r->nto; i++)
		if (r->to[i].kind != ACL_TARGET_CIDR || r->to[i].cidr.any ||
			r->to[i].cidr.family != family)
			return false;
	return true;
}

/* Clauses only an allow rule can have, and a source of a family none of
 * the rule's destinations has. */
static int
rule_check_clauses(const struct acl_request_rule *r, char *err, size_t errlen)
{
	const struct egress *e = r->egress;
	bool v4 = e && e->src[EGRESS_V4].mode != EGRESS_SRC_UNSET;
	bool v6 = e && e->src[EGRESS_V6].mode != EGRESS_SRC_UNSET;

	if (e == NULL)
		return 0;
	if (!r->allow) {
		errbuf_printf(err, errlen, "only an allow rule can say how traffic leaves");
		return -1;
	}
	if (v4 != v6 && to_only_family(r, v4 ? AF_INET6 : AF_INET)) {
		errbuf_printf(err, errlen,
			"external: an %s source, but every destination of the rule is %s",
			v4 ? "IPv4" : "IPv6", v4 ? "IPv6" : "IPv4");
		return -1;
	}
	return 0;
}

int
acl_add_request_rule(struct acl *a, char **argv, int line, char *err, size_t errlen)
{
	struct acl_request_rule r;
	const char *word, *val;
	unsigned sel;
	int i, rc;

	memset(&r, 0, sizeof(r));
	r.line = line;
	if (parse_verdict(argv, &r.allow, err, errlen) != 0)
		return -1;
	for (i = 1; argv[i] != NULL; i++) {
		word = argv[i];
		if (egress_is_clause(word)) {
			if ((rc = rule_clause(&r, argv + i, err, errlen)) < 0)
				goto fail;
			i += rc - 1;
			continue;
		}
		sel = word_bit(acl_selectors, ACL_NSELECTORS, word);
		if (sel == 0 && (rc = clause_parse(&r, word, argv[i + 1], err, errlen)) <= 0) {
			if (rc < 0)
				goto fail;
			i++;
			continue;
		}
		if (sel == 0) {
			errbuf_printf(err, errlen, "unknown selector '%s'", word);
			goto fail;
		}
		if (r.sel & sel) {
			errbuf_printf(err, errlen, "duplicate selector '%s'", word);
			goto fail;
		}
		r.sel |= sel;
		if (sel == SEL_ALL)
			continue;
		val = argv[i + 1];
		if (val == NULL) {
			errbuf_printf(err, errlen, "missing value after '%s'", word);
			goto fail;
		}
		i++;
		switch (sel) {
		case SEL_FROM:
			rc = list_each(word, val, from_item, &r, err, errlen);
			break;
		case SEL_TO:
			rc = list_each(word, val, to_item, &r, err, errlen);
			break;
		case SEL_PORT:
			rc = port_parse(val, &r, err, errlen);
			break;
		case SEL_CMD:
			rc = list_each(word, val, cmd_item, &r, err, errlen);
			break;
		default:
			rc = list_each(word, val, user_item, &r, err, errlen);
			break;
		}
		if (rc != 0)
			goto fail;
	}
	if (clause_check(&r, err, errlen) != 0 || rule_check_clauses(&r, err, errlen) < 0)
		goto fail;
	return rules_append(&a->req, &a->nreq, &r, err, errlen);
fail:
	request_rule_clear(&r);
	return -1;
}

size_t
acl_request_rule_count(const struct acl *a)
{
	return a->nreq;
}

const struct egress *
acl_request_rule_egress(const struct acl *a, size_t i, int *line)
{
	if (i >= a->nreq || a->req[i].egress == NULL)
		return NULL;
	*line = a->req[i].line;
	return a->req[i].egress;
}

/* --- checks -------------------------------------------------------------- */

enum to_match {
	TO_NO,
	TO_ALL,       /* matched through `all` only */
	TO_NAME,      /* a domain item matched (and no network item) */
	TO_ADDR,      /* a network item contains the destination address */
	TO_UNDECIDED, /* a CIDR item needs dst_addr, which is unknown */
};

/* A domain item decides the rule even before the address is known; a
 * network item needs the address. `all` comes last so a rule that also
 * names a network still waits for the address. */
static enum to_match
match_to(const struct acl_request_rule *r, const struct acl_request *q)
{
	bool has_cidr = false, has_all = false, name = false;
	size_t i;

	for (i = 0; i < r->nto; i++) {
		const struct acl_target *t = &r->to[i];

		if (t->kind == ACL_TARGET_DOMAIN)
			name = name || acl_domain_match(t->domain, q->dst_name);
		else if (t->kind == ACL_TARGET_CIDR)
			has_cidr = true;
		else
			has_all = true;
	}
	/* A network item that contains the address says more than a name
	 * (the built-in protections key on it), so it is looked for even
	 * when a name matched. */
	if (has_cidr && q->dst_addr) {
		for (i = 0; i < r->nto; i++)
			if (r->to[i].kind == ACL_TARGET_CIDR &&
				acl_cidr_match(&r->to[i].cidr, q->dst_addr))
				return TO_ADDR;
	}
	if (name)
		return TO_NAME;
	if (has_cidr && q->dst_addr == NULL)
		return TO_UNDECIDED;
	return has_all ? TO_ALL : TO_NO;
}

static bool
match_from(const struct acl_request_rule *r, const union sockaddr_any *client)
{
	size_t i;

	for (i = 0; i < r->nfrom; i++) {
		if (acl_cidr_match(&r->from[i], client))
			return true;
	}
	return false;
}

static bool
match_user(const struct acl_request_rule *r, const char *user)
{
	size_t i;

	if (user == NULL)
		return false;
	for (i = 0; i < r->nusers; i++) {
		if (strcmp(r->users[i], user) == 0)
			return true;
	}
	return false;
}

struct acl_result
acl_check_client(const struct acl *a, const union sockaddr_any *client)
{
	struct acl_result res = { ACL_ALLOW, 0, false, NULL, NULL };

	for (size_t i = 0; i < a->nclient; i++) {
		const struct acl_request_rule *r = &a->client[i];

		if (match_from(r, client)) {
			res.verdict = r->allow ? ACL_ALLOW : ACL_DENY;
			res.line = r->line;
			return res;
		}
	}
	return res;
}

struct acl_result
acl_check_request(const struct acl *a, const struct acl_request *q)
{
	struct acl_result res = { ACL_ALLOW, 0, false, NULL, NULL };
	enum to_match to;
	size_t i;

	for (i = 0; i < a->nreq; i++) {
		const struct acl_request_rule *r = &a->req[i];

		/* The cheap selectors first; `to` last because only it can
		 * leave the rule undecided, and an undecided rule must not
		 * stop the walk if another selector already rules it out. */
		if ((r->sel & SEL_FROM) && !match_from(r, q->client))
			continue;
		if (!q->dst_unknown && (r->sel & SEL_PORT) &&
			(q->port < r->port_lo || q->port > r->port_hi))
			continue;
		if ((r->sel & SEL_CMD) && (r->cmds & q->cmd) == 0)
			continue;
		if ((r->sel & SEL_USER) && !match_user(r, q->user))
			continue;
		if (q->dst_unknown && (r->sel & (SEL_TO | SEL_PORT))) {
			/* Some destination may match it: an allow rule leaves
			 * the request to the per-destination checks, a deny
			 * rule does not refuse all of them. */
			if (!r->allow)
				continue;
			res.line = r->line;
			res.verdict = ACL_UNDECIDED;
			return res;
		}
		to = (r->sel & SEL_TO) ? match_to(r, q) : TO_ALL;
		if (to == TO_NO)
			continue;
		res.line = r->line;
		if (to == TO_UNDECIDED) {
			res.verdict = ACL_UNDECIDED;
			return res;
		}
		res.verdict = r->allow ? ACL_ALLOW : ACL_DENY;
		res.to_addr = to == TO_ADDR;
		res.via = r->via;
		res.egress = r->egress;
		return res;
	}
	return res;
}

/* --- dump ---------------------------------------------------------------- */

static void
via_dump(const struct acl_via *v, FILE *out)
{
	char url[UPSTREAM_LABEL_MAX + 300];

	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		upstream_format(&v->hop[i], url, sizeof(url));
		fprintf(out, "%s%s", i == 0 ? " via " : ",", url);
	}
	if (v->resolve_local)
		fputs(" resolve local", out);
}

void
acl_dump(const struct acl *a, FILE *out)
{
	acl_dump_with(a, out, NULL, NULL);
}

void
acl_dump_with(const struct acl *a, FILE *out, acl_dump_after_cb after, void *arg)
{
	size_t i, j;

	for (i = 0; i < a->nclient; i++) {
		const struct acl_request_rule *r = &a->client[i];

		fprintf(out, "client %s", r->allow ? "allow" : "deny");
		for (j = 0; j < r->nfrom; j++) {
			fputc(' ', out);
			cidr_print(&r->from[j], out);
		}
		fputc('\n', out);
	}
	for (i = 0; i < a->nreq; i++) {
		const struct acl_request_rule *r = &a->req[i];
		bool quote = false;

		fprintf(out, "rule %s", r->allow ? "allow" : "deny");
		/* `all` is a no-op next to other selectors; print it only
		 * when it is the whole rule. */
		if ((r->sel & ~SEL_ALL) == 0)
			fputs(" all", out);
		for (j = 0; j < r->nfrom; j++) {
			fputs(j == 0 ? " from " : ",", out);
			cidr_print(&r->from[j], out);
		}
		for (j = 0; j < r->nto; j++) {
			const struct acl_target *t = &r->to[j];

			fputs(j == 0 ? " to " : ",", out);
			if (t->kind == ACL_TARGET_ALL)
				fputs("all", out);
			else if (t->kind == ACL_TARGET_CIDR)
				cidr_print(&t->cidr, out);
			else if (strcmp(t->domain, "all") == 0)
				fputs("all.", out); /* the host, not the keyword */
			else
				fputs(t->domain, out);
		}
		if (r->sel & SEL_PORT) {
			if (r->port_lo == r->port_hi)
				fprintf(out, " port %u", (unsigned)r->port_lo);
			else
				fprintf(out, " port %u-%u", (unsigned)r->port_lo,
					(unsigned)r->port_hi);
		}
		if (r->sel & SEL_CMD) {
			const char *sep = " cmd ";

			for (j = 0; j < ACL_NCMDS; j++) {
				if (r->cmds & acl_cmds[j].bit) {
					fprintf(out, "%s%s", sep, acl_cmds[j].name);
					sep = ",";
				}
			}
		}
		/* The config grammar groups spaces and '#' with quotes; names
		 * with '"' were refused at parse time. */
		for (j = 0; j < r->nusers; j++)
			quote = quote || strpbrk(r->users[j], " \t#") != NULL;
		for (j = 0; j < r->nusers; j++) {
			fputs(j == 0 ? (quote ? " user \"" : " user ") : ",", out);
			fputs(r->users[j], out);
		}
		if (quote)
			fputc('"', out);
		via_dump(r->via, out);
		if (r->egress != NULL)
			egress_dump(r->egress, out, " ", "");
		if (after)
			after(r->line, out, arg);
		fputc('\n', out);
	}
}
