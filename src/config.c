/*
 * config: socks5d.conf text -> struct config. One directive per line,
 * "keyword arg ...", '#' starts a comment outside double quotes, and double
 * quotes group characters (spaces, '#') into one argument. Each keyword is a
 * row of the table below: its argument counts, whether it may repeat, and a
 * setter (typed setters store through offsetof). Every field starts "unset";
 * defaults are filled once after the whole text parsed, so a directive's
 * position never matters. The first error stops the parse and is reported as
 * "NAME:LINE: message" naming the keyword.
 *
 * Opening sockets, resolving and warning about plain-text secrets are left
 * to the caller; the only file read while parsing is what users-file names.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth.h"
#include "proto.h"
#include "strnum.h"

/* More than any keyword takes; extra arguments are counted, not kept. */
#define CONFIG_MAX_ARGS 32
/* A config file is a few kilobytes; this only stops -f /dev/zero. */
#define CONFIG_FILE_MAX ((size_t)16 * 1024 * 1024)
#define CONFIG_SECONDS_MAX 86400u

#define UNSET_U UINT_MAX
#define UNSET_LEVEL ((enum log_level) - 1)

enum timeout_kind {
	TIMEOUT_HANDSHAKE,
	TIMEOUT_CONNECT,
	TIMEOUT_IDLE,
	TIMEOUT_UDP,
	TIMEOUT_BIND,
	TIMEOUT_DNS,
	TIMEOUT_COUNT,
};

/* resolv.conf(5)'s caps, which the resolver applies to its options too. */
#define CONFIG_DNS_TIMEOUT_MAX 30u
#define CONFIG_DNS_ATTEMPTS_MAX 5u

static const struct {
	const char *name;
	size_t off;   /* field in struct config */
	unsigned min; /* 0 only where 0 means "never" */
	unsigned max;
} timeouts[TIMEOUT_COUNT] = {
	[TIMEOUT_HANDSHAKE] = { "handshake", offsetof(struct config, timeout_handshake), 1,
		CONFIG_SECONDS_MAX },
	[TIMEOUT_CONNECT] = { "connect", offsetof(struct config, timeout_connect), 1,
		CONFIG_SECONDS_MAX },
	[TIMEOUT_IDLE] = { "idle", offsetof(struct config, timeout_idle), 0, CONFIG_SECONDS_MAX },
	[TIMEOUT_UDP] = { "udp", offsetof(struct config, timeout_udp), 0, CONFIG_SECONDS_MAX },
	[TIMEOUT_BIND] = { "bind", offsetof(struct config, timeout_bind), 1, CONFIG_SECONDS_MAX },
	/* 0 stays "unset": the resolver takes resolv.conf's value, else 5. */
	[TIMEOUT_DNS] = { "dns", offsetof(struct config, timeout_dns), 1, CONFIG_DNS_TIMEOUT_MAX },
};

struct config_keyword;

/* State of one parse; the lines remembered here feed "first at line N". */
struct config_parse {
	struct config *c;
	const char *name; /* for messages */
	int line;         /* current line, 1-based */
	char *err;
	size_t errlen;
	int *first; /* per keyword: line first seen, 0 = not yet */
	int timeout_line[TIMEOUT_COUNT];
	int external4_line, external6_line;
	int nameserver_line[CONFIG_MAX_NAMESERVERS];
	int auth_line;
	const struct config_keyword *kw; /* the line's keyword, for setters */
	int argc;                        /* its argument count */
};

/* argv holds the arguments after the keyword; p->kw and p->argc say which
 * keyword and how many. */
typedef int (*config_set_cb)(struct config_parse *p, char **argv);

struct config_keyword {
	const char *name;
	unsigned min_args, max_args;
	bool repeatable; /* else a second occurrence is an error */
	config_set_cb set;
	size_t off, off2; /* where typed setters store */
	unsigned lo, hi;  /* range for numbers */
};

static int set_listen(struct config_parse *, char **);
static int set_auth(struct config_parse *, char **);
static int set_user(struct config_parse *, char **);
static int set_users_file(struct config_parse *, char **);
static int set_log_level(struct config_parse *, char **);
static int set_timeout(struct config_parse *, char **);
static int set_nameserver(struct config_parse *, char **);
static int set_uint(struct config_parse *, char **);
static int set_port_range(struct config_parse *, char **);
static int set_egress(struct config_parse *, char **);
static int set_happy_eyeballs(struct config_parse *, char **);
static int set_choice(struct config_parse *, char **);
static int set_networks(struct config_parse *, char **);
static int set_metrics(struct config_parse *, char **);
static int set_announce(struct config_parse *, char **);
static int set_rule(struct config_parse *, char **);
static int set_auth_fail_limit(struct config_parse *, char **);
static int set_run_as(struct config_parse *, char **);
static int set_limit(struct config_parse *, char **);
static int set_quota_timezone(struct config_parse *, char **);
static int set_path(struct config_parse *, char **);

#define OFF(f) offsetof(struct config, f)

static const struct config_keyword keywords[] = {
	{ "listen", 1, 4, true, set_listen, 0, 0, 0, 0 },
	{ "proxy-protocol-from", 1, CONFIG_MAX_ARGS, true, set_networks, OFF(proxy_from),
		OFF(nproxy_from), 0, CONFIG_MAX_PROXY_FROM },
	{ "metrics", 1, 1, false, set_metrics, 0, 0, 0, 0 },
	/* at most one per address family; set_announce checks */
	{ "announce", 1, 1, true, set_announce, 0, 0, 0, 0 },
	{ "auth", 1, 2, false, set_auth, 0, 0, 0, 0 },
	{ "user", 2, CONFIG_MAX_ARGS, true, set_user, 0, 0, 0, 0 },
	{ "users-file", 1, 2, false, set_users_file, 0, 0, 0, 0 },
	{ "log", 1, 1, false, set_choice, OFF(log_syslog), 0, 0, 0 },
	{ "log-level", 1, 1, false, set_log_level, 0, 0, 0, 0 },
	/* repeatable per kind; set_timeout rejects a kind given twice */
	{ "timeout", 2, 2, true, set_timeout, 0, 0, 0, 0 },
	{ "shutdown-timeout", 1, 1, false, set_uint, OFF(shutdown_timeout), 0, 0,
		CONFIG_SECONDS_MAX },
	{ "nameserver", 1, 1, true, set_nameserver, 0, 0, 0, 0 },
	{ "resolve-prefer", 1, 1, false, set_choice, OFF(resolve_prefer), 0, 0, 0 },
	{ "dns-cache-size", 1, 1, false, set_uint, OFF(dns_cache_size), 0, 0, 1000000 },
	{ "dns-cache-max-ttl", 1, 1, false, set_uint, OFF(dns_cache_max_ttl), 0, 0,
		CONFIG_SECONDS_MAX },
	{ "dns-attempts", 1, 1, false, set_uint, OFF(dns_attempts), 0, 1, CONFIG_DNS_ATTEMPTS_MAX },
	{ "udp-port-range", 1, 1, false, set_port_range, OFF(udp_port_lo), OFF(udp_port_hi), 1,
		65535 },
	{ "bind-port-range", 1, 1, false, set_port_range, OFF(bind_port_lo), OFF(bind_port_hi), 1,
		65535 },
	{ "socks4", 1, 1, false, set_choice, OFF(socks4_opt), 0, 0, 0 },
	{ "workers", 1, 1, false, set_uint, OFF(workers), 0, 1, CONFIG_MAX_WORKERS },
	{ "relay-buffer", 1, 1, false, set_uint, OFF(relay_buffer), 0, 4096, 16777216 },
	{ "relay-splice", 1, 1, false, set_choice, OFF(relay_splice), 0, 0, 0 },
	{ "client", 2, CONFIG_MAX_ARGS, true, set_rule, 0, 0, 0, 0 },
	{ "rule", 1, CONFIG_MAX_ARGS, true, set_rule, 0, 0, 0, 0 },
	{ "max-connections", 1, 1, false, set_uint, OFF(max_connections), 0, 0, 10000000 },
	{ "max-connections-per-ip", 1, 1, false, set_uint, OFF(max_connections_per_ip), 0, 0,
		10000000 },
	{ "max-sessions-per-user", 1, 1, false, set_uint, OFF(max_sessions_per_user), 0, 0,
		10000000 },
	{ "max-lookups", 1, 1, false, set_uint, OFF(max_lookups), 0, 0, 1000000 },
	{ "auth-fail-limit", 1, 3, false, set_auth_fail_limit, 0, 0, 0, 0 },
	{ "auth-fail-exempt", 1, CONFIG_MAX_ARGS, true, set_networks, OFF(auth_exempt),
		OFF(nauth_exempt), 0, CONFIG_MAX_AUTH_EXEMPT },
	{ "auth-workers", 1, 1, false, set_uint, OFF(auth_workers), 0, 1, 64 },
	{ "ipv6-prefix", 1, 1, false, set_uint, OFF(ipv6_prefix), 0, 1, 128 },
	{ "parent-down-after", 1, 1, false, set_uint, OFF(parent_down_after), 0, 0, 1000000 },
	{ "parent-down-for", 1, 1, false, set_uint, OFF(parent_down_for), 0, 1,
		CONFIG_SECONDS_MAX },
	{ "run-as", 1, 1, false, set_run_as, 0, 0, 0, 0 },
	/* at most one per address family; set_egress checks */
	{ "external", 1, 2, true, set_egress, 0, 0, 0, 0 },
	{ "external-interface", 1, 1, false, set_egress, 0, 0, 0, 0 },
	{ "socket-mark", 1, 1, false, set_egress, 0, 0, 0, 0 },
	{ "ip-tos", 1, 1, false, set_egress, 0, 0, 0, 0 },
	{ "tcp-keepalive", 1, 3, false, set_egress, 0, 0, 0, 0 },
	{ "tcp-user-timeout", 1, 1, false, set_egress, 0, 0, 0, 0 },
	{ "happy-eyeballs", 1, 1, false, set_happy_eyeballs, 0, 0, 0, 0 },
	{ "limit", 2, 9, true, set_limit, 0, 0, 0, 0 },
	{ "quota-timezone", 1, 1, false, set_quota_timezone, 0, 0, 0, 0 },
	{ "state-dir", 1, 1, false, set_path, OFF(state_dir), 0, 0, PATH_MAX },
	{ "log-interim", 1, 1, false, set_uint, OFF(log_interim), 0, 0, CONFIG_SECONDS_MAX },
	{ "control", 1, 1, false, set_path, OFF(control), 0, 0, CONFIG_CONTROL_MAX },
	{ "metrics-users", 1, 1, false, set_uint, OFF(metrics_users), 0, 0, 100000 },
};

#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

/* Keywords whose argument is one of two words, stored as an int (set_choice)
 * and printed back from the same words by config_dump. */
static const struct config_choice {
	const char *keyword;
	const char *words[2];
	int values[2];
	const char *problem, *hint; /* "KEYWORD: problem 'WORD'hint" */
} choices[] = {
	{ "log", { "stderr", "syslog" }, { 0, 1 }, "unknown destination", " (stderr, syslog)" },
	{ "resolve-prefer", { "ipv4", "ipv6" }, { AF_INET, AF_INET6 }, "unknown family",
		" (ipv4, ipv6)" },
	{ "socks4", { "off", "on" }, { 0, 1 }, "expected on or off, got", "" },
	{ "relay-splice", { "off", "on" }, { 0, 1 }, "expected on or off, got", "" },
};

static int perr(struct config_parse *p, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Writes "NAME:LINE: message"; returns -1 so setters can `return perr(...)`. */
static int
perr(struct config_parse *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->line);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static unsigned *
field_u(struct config *c, size_t off)
{
	return (unsigned *)(void *)((char *)c + off);
}

static unsigned
field_get(const struct config *c, size_t off)
{
	return *(const unsigned *)(const void *)((const char *)c + off);
}

static uint16_t *
field_u16(struct config *c, size_t off)
{
	return (uint16_t *)(void *)((char *)c + off);
}

/* A number in lo..hi (strnum: digits only, no sign, no blanks). what names
 * the keyword in messages. */
static int
parse_uint(struct config_parse *p, const char *what, const char *s, unsigned lo, unsigned hi,
	unsigned *out)
{
	switch (strnum_parse_uint(s, lo, hi, out)) {
	case STRNUM_OK:
		return 0;
	case STRNUM_EMPTY:
	case STRNUM_NOT_DECIMAL:
		break;
	case STRNUM_RANGE:
		return perr(p, "%s: %s out of range %u..%u", what, s, lo, hi);
	}
	return perr(p, "%s: '%s' is not a number", what, s);
}

/* listen's options after the address: proxy-protocol, backlog N. */
static int
listen_options(struct config_parse *p, char **argv, struct config_listen *l)
{
	bool backlog = false;

	for (int i = 1; i < p->argc; i++) {
		if (strcmp(argv[i], "proxy-protocol") == 0 && !l->proxy_protocol) {
			l->proxy_protocol = true;
		} else if (strcmp(argv[i], "backlog") == 0 && !backlog) {
			if (i + 1 == p->argc)
				return perr(p, "listen: backlog: missing value");
			if (parse_uint(p, "listen: backlog", argv[++i], 1, 65535, &l->backlog) < 0)
				return -1;
			backlog = true;
		} else {
			return perr(p, "listen: %s option '%s' (proxy-protocol, backlog N)",
				strcmp(argv[i], "proxy-protocol") == 0 ||
						strcmp(argv[i], "backlog") == 0
					? "duplicate"
					: "unknown",
				argv[i]);
		}
	}
	return 0;
}

static int
set_listen(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	struct config_listen l;
	char buf[ADDR_STRLEN];

	memset(&l, 0, sizeof(l));
	l.backlog = CONFIG_DEFAULT_BACKLOG;
	l.line = p->line;
	if (addr_parse_with_port(argv[0], -1, &l.addr) < 0)
		return perr(p, "listen: bad address '%s' (expected ADDR:PORT or [IPV6]:PORT)",
			argv[0]);
	if (addr_port(&l.addr) == 0)
		return perr(p, "listen: port 0 is not allowed");
	if (listen_options(p, argv, &l) < 0)
		return -1;
	for (size_t i = 0; i < c->nlisten; i++)
		if (addr_equal(&c->listen[i].addr, &l.addr))
			return perr(p, "listen: duplicate address %s, first at line %d",
				addr_format(&l.addr, buf, sizeof(buf)), c->listen[i].line);
	if (c->nlisten == CONFIG_MAX_LISTEN)
		return perr(p, "listen: too many addresses (at most %d)", CONFIG_MAX_LISTEN);
	c->listen[c->nlisten++] = l;
	return 0;
}

/* A list of networks (proxy-protocol-from, auth-fail-exempt): kw->off is
 * the array, off2 its count, hi the most it holds. */
static int
set_networks(struct config_parse *p, char **argv)
{
	const struct config_keyword *kw = p->kw;
	struct acl_cidr *nets = (struct acl_cidr *)(void *)((char *)p->c + kw->off);
	size_t *n = (size_t *)(void *)((char *)p->c + kw->off2);

	for (int i = 0; i < p->argc; i++) {
		if (*n == kw->hi)
			return perr(p, "%s: too many networks (at most %u)", kw->name, kw->hi);
		if (acl_parse_cidr(argv[i], &nets[*n]) < 0)
			return perr(p, "%s: bad network '%s' (expected ADDR/PREFIX, ADDR or all)",
				kw->name, argv[i]);
		(*n)++;
	}
	return 0;
}

/* `rule allow ... rate UP DOWN`: the clause goes to limits (keyed by the
 * rule's words, so an unchanged rule keeps its bucket over a reload), the
 * rest to acl. Returns 0 (argv cut before the clause), 1 without one, or
 * -1 after the message. */
static int
rule_rate_clause(struct config_parse *p, char **argv)
{
	char err[256], key[1024] = "";
	int n = p->argc;

	if (n < 3 || strcmp(argv[n - 3], "rate") != 0)
		return 1;
	if (strcmp(argv[0], "allow") != 0)
		return perr(p, "rule: a rate is for allow rules only");
	for (int i = 0; i < n - 3; i++) {
		size_t used = strlen(key);
		snprintf(key + used, sizeof(key) - used, "%s%s", i ? " " : "", argv[i]);
	}
	if (limitset_add_rule_rate(p->c->limits, p->line, argv[n - 2], argv[n - 1], key, err,
		    sizeof(err)) < 0)
		return perr(p, "rule: %s", err);
	argv[n - 3] = NULL;
	return 0;
}

/* client ... and rule ...: acl parses the words; its message gets the
 * keyword in front. */
static int
set_rule(struct config_parse *p, char **argv)
{
	bool client = strcmp(p->kw->name, "client") == 0;
	char err[256];
	int rc;

	if (!client && rule_rate_clause(p, argv) < 0)
		return -1;
	rc = client ? acl_add_client_rule(p->c->acl, argv, p->line, err, sizeof(err))
		    : acl_add_request_rule(p->c->acl, argv, p->line, err, sizeof(err));
	if (rc < 0)
		return perr(p, "%s: %s", p->kw->name, err);
	return 0;
}

static int
set_limit(struct config_parse *p, char **argv)
{
	char err[384];

	if (limitset_add_line(p->c->limits, argv, p->line, err, sizeof(err)) < 0)
		return perr(p, "limit: %s", err);
	return 0;
}

static int
set_quota_timezone(struct config_parse *p, char **argv)
{
	char err[128];

	if (limitset_set_timezone(p->c->limits, argv[0], err, sizeof(err)) < 0)
		return perr(p, "quota-timezone: %s", err);
	return 0;
}

/* auth-fail-limit N [WINDOW [LOCKOUT]] */
static int
set_auth_fail_limit(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	unsigned v;

	if (parse_uint(p, "auth-fail-limit", argv[0], 0, 1000000, &v) < 0)
		return -1;
	c->auth_fail_limit = v;
	c->auth_fail_window = 60;
	c->auth_lockout = 300;
	if (p->argc > 1 &&
		parse_uint(p, "auth-fail-limit", argv[1], 1, CONFIG_SECONDS_MAX,
			&c->auth_fail_window) < 0)
		return -1;
	if (p->argc > 2 &&
		parse_uint(p, "auth-fail-limit", argv[2], 1, CONFIG_SECONDS_MAX, &c->auth_lockout) <
			0)
		return -1;
	return 0;
}

static int
set_run_as(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	const char *colon = strchr(argv[0], ':');
	size_t ulen = colon ? (size_t)(colon - argv[0]) : strlen(argv[0]);

	if (ulen == 0 || ulen >= sizeof(c->run_as_user) ||
		(colon && (colon[1] == '\0' || strlen(colon + 1) >= sizeof(c->run_as_group))))
		return perr(p, "run-as: expected USER or USER:GROUP, got '%s'", argv[0]);
	memcpy(c->run_as_user, argv[0], ulen);
	c->run_as_user[ulen] = '\0';
	if (colon)
		snprintf(c->run_as_group, sizeof(c->run_as_group), "%s", colon + 1);
	return 0;
}

static int
set_metrics(struct config_parse *p, char **argv)
{
	struct config *c = p->c;

	if (addr_parse_with_port(argv[0], -1, &c->metrics) < 0)
		return perr(p, "metrics: bad address '%s' (expected ADDR:PORT or [IPV6]:PORT)",
			argv[0]);
	if (addr_port(&c->metrics) == 0)
		return perr(p, "metrics: port 0 is not allowed");
	c->has_metrics = true;
	return 0;
}

/* The IPv4 and IPv6 slots of a setting that keeps one address per family
 * (external, announce, a user's external). */
struct family_pair {
	union sockaddr_any *addr[2]; /* [0] IPv4, [1] IPv6 */
	bool *has[2];
};

static const char *const family_names[2] = { "IPv4", "IPv6" };

/*
 * Parses word, a numeric address, into the pair's slot for its family
 * unless that slot is set already (*taken: the caller words that error).
 * Returns the slot, 0 or 1, or -1 after "BAD 'WORD' (expected a numeric
 * IPv4 or IPv6 address)".
 */
static int
family_pair_set(struct config_parse *p, const struct family_pair *fp, const char *bad,
	const char *word, bool *taken)
{
	union sockaddr_any a;
	int f;

	*taken = false;
	if (addr_parse(word, 0, &a) < 0)
		return perr(p, "%s '%s' (expected a numeric IPv4 or IPv6 address)", bad, word);
	f = a.sa.sa_family == AF_INET6;
	*taken = *fp->has[f];
	if (!*taken) {
		*fp->addr[f] = a;
		*fp->has[f] = true;
	}
	return f;
}

static int
set_announce(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	const struct family_pair fp = { { &c->announce4, &c->announce6 },
		{ &c->has_announce4, &c->has_announce6 } };
	bool taken;
	int f = family_pair_set(p, &fp, "announce: bad address", argv[0], &taken);

	if (f >= 0 && taken)
		return perr(p, "announce: a second %s address", family_names[f]);
	return f < 0 ? -1 : 0;
}

static int
set_auth(struct config_parse *p, char **argv)
{
	struct config *c = p->c;

	for (int i = 0; i < p->argc; i++) {
		uint8_t m;

		if (strcmp(argv[i], "none") == 0)
			m = SOCKS_METHOD_NONE;
		else if (strcmp(argv[i], "password") == 0)
			m = SOCKS_METHOD_PASSWORD;
		else
			return perr(p, "auth: unknown method '%s' (none, password)", argv[i]);
		for (size_t j = 0; j < c->nmethods; j++)
			if (c->methods[j] == m)
				return perr(p, "auth: duplicate method '%s'", argv[i]);
		c->methods[c->nmethods++] = m;
	}
	p->auth_line = p->line;
	return 0;
}

static int
set_user(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	struct config_user_egress ue;
	char msg[384], where[64];

	memset(&ue, 0, sizeof(ue));
	egress_init(&ue.egress);
	/* argv ends in NULL: the clause parser stops there. */
	for (int i = 2, n; i < p->argc; i += n) {
		n = egress_parse_clause(&ue.egress, EGRESS_IN_USER, argv + i, msg, sizeof(msg));
		if (n < 0)
			return perr(p, "user: %s", msg);
		if (n == 0)
			return perr(p, "user: unknown option '%s' (external, external-interface)",
				argv[i]);
	}
	snprintf(where, sizeof(where), "%s:%d", p->name, p->line);
	if (auth_table_add_at(c->users, argv[0], argv[1], where, NULL, msg, sizeof(msg)) < 0)
		return perr(p, "user: %s", msg);
	if (!egress_is_empty(&ue.egress)) {
		struct config_user_egress *v = realloc(c->user_egress,
			(c->nuser_egress + 1) * sizeof(*v));
		if (!v)
			return perr(p, "user: out of memory");
		snprintf(ue.name, sizeof(ue.name), "%s", argv[0]);
		ue.line = p->line;
		c->user_egress = v;
		c->user_egress[c->nuser_egress++] = ue;
	}
	return 0;
}

const struct egress *
config_user_egress(const struct config *c, const char *user)
{
	for (size_t i = 0; user && i < c->nuser_egress; i++)
		if (strcmp(c->user_egress[i].name, user) == 0)
			return &c->user_egress[i].egress;
	return NULL;
}

void
config_each_egress(const struct config *c, void (*fn)(const struct egress *e, int line, void *arg),
	void *arg)
{
	const struct egress *e;
	int line;

	fn(&c->egress, c->egress_interface_line ? c->egress_interface_line : c->egress_mark_line,
		arg);
	for (size_t i = 0; i < c->nuser_egress; i++)
		fn(&c->user_egress[i].egress, c->user_egress[i].line, arg);
	for (size_t i = 0; i < acl_request_rule_count(c->acl); i++)
		if ((e = acl_request_rule_egress(c->acl, i, &line)) != NULL)
			fn(e, line, arg);
}

/* Relative paths are relative to the directory of the config file (the
 * directory part of p->name; the current directory when it has none).
 * Returns 0, or -1 after the message naming the keyword. */
static int
resolve_path(struct config_parse *p, const char *path, char *full, size_t cap)
{
	const char *slash = strrchr(p->name, '/');
	int n;

	if (*path == '\0')
		return perr(p, "%s: empty path", p->kw->name);
	if (path[0] == '/' || !slash)
		n = snprintf(full, cap, "%s", path);
	else
		n = snprintf(full, cap, "%.*s/%s", (int)(slash - p->name), p->name, path);
	if (n < 0 || (size_t)n >= cap)
		return perr(p, "%s: path too long (at most %zu bytes)", p->kw->name, cap - 1);
	return 0;
}

/* state-dir, control: a path (kw->off the field, kw->hi its size). */
static int
set_path(struct config_parse *p, char **argv)
{
	return resolve_path(p, argv[0], (char *)p->c + p->kw->off, p->kw->hi);
}

static int
set_users_file(struct config_parse *p, char **argv)
{
	char full[PATH_MAX];

	if (resolve_path(p, argv[0], full, sizeof(full)) < 0)
		return -1;
	if (p->argc == 2 && strcmp(argv[1], "watch") != 0)
		return perr(p, "users-file: unknown option '%s' (watch)", argv[1]);
	snprintf(p->c->users_file, sizeof(p->c->users_file), "%s", full);
	p->c->users_file_watch = p->argc == 2;
	/* Its own messages are already "PATH:LINE: message" about that file. */
	return auth_table_load_file(p->c->users, full, p->err, p->errlen);
}

static int
set_log_level(struct config_parse *p, char **argv)
{
	if (log_level_from_name(argv[0], &p->c->log_level))
		return 0;
	return perr(p, "log-level: unknown level '%s' (error, warn, info, debug)", argv[0]);
}

static int
set_timeout(struct config_parse *p, char **argv)
{
	char what[32];

	for (size_t k = 0; k < TIMEOUT_COUNT; k++) {
		if (strcmp(argv[0], timeouts[k].name) != 0)
			continue;
		if (p->timeout_line[k])
			return perr(p, "duplicate 'timeout %s', first at line %d", timeouts[k].name,
				p->timeout_line[k]);
		snprintf(what, sizeof(what), "timeout %s", timeouts[k].name);
		if (parse_uint(p, what, argv[1], timeouts[k].min, timeouts[k].max,
			    field_u(p->c, timeouts[k].off)) < 0)
			return -1;
		p->timeout_line[k] = p->line;
		return 0;
	}
	return perr(p, "timeout: unknown kind '%s' (handshake, connect, idle, udp, bind, dns)",
		argv[0]);
}

static int
set_nameserver(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	union sockaddr_any a;
	char buf[ADDR_STRLEN];

	/* A bare IPv6 address (more than one colon) takes the default port. */
	if (addr_parse_with_port(argv[0], 53, &a) < 0)
		return perr(p,
			"nameserver: bad address '%s' (expected ADDR, ADDR:PORT or "
			"[IPV6]:PORT)",
			argv[0]);
	if (addr_port(&a) == 0)
		return perr(p, "nameserver: port 0 is not allowed");
	for (size_t i = 0; i < c->nnameservers; i++)
		if (addr_equal(&c->nameservers[i], &a))
			return perr(p, "nameserver: duplicate address %s, first at line %d",
				addr_format(&a, buf, sizeof(buf)), p->nameserver_line[i]);
	if (c->nnameservers == CONFIG_MAX_NAMESERVERS)
		return perr(p, "nameserver: too many nameservers (at most %d)",
			CONFIG_MAX_NAMESERVERS);
	p->nameserver_line[c->nnameservers] = p->line;
	c->nameservers[c->nnameservers++] = a;
	return 0;
}

static const struct config_choice *
choice_for(const char *keyword)
{
	for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++)
		if (strcmp(choices[i].keyword, keyword) == 0)
			return &choices[i];
	abort(); /* every set_choice keyword has a row */
}

static int
set_choice(struct config_parse *p, char **argv)
{
	const struct config_choice *ch = choice_for(p->kw->name);
	int *f = (int *)(void *)((char *)p->c + p->kw->off);

	for (size_t i = 0; i < 2; i++)
		if (strcmp(argv[0], ch->words[i]) == 0) {
			*f = ch->values[i];
			return 0;
		}
	return perr(p, "%s: %s '%s'%s", p->kw->name, ch->problem, argv[0], ch->hint);
}

/* The word set_choice takes for value (the first word for any value but
 * the second one's, as the defaults leave none). */
static const char *
choice_word(const char *keyword, int value)
{
	const struct config_choice *ch = choice_for(keyword);

	return ch->words[value == ch->values[1] ? 1 : 0];
}

static int
set_uint(struct config_parse *p, char **argv)
{
	const struct config_keyword *kw = p->kw;

	return parse_uint(p, kw->name, argv[0], kw->lo, kw->hi, field_u(p->c, kw->off));
}

static int
set_port_range(struct config_parse *p, char **argv)
{
	const struct config_keyword *kw = p->kw;
	char *dash = strchr(argv[0], '-');
	unsigned lo, hi;

	if (!dash || dash == argv[0] || dash[1] == '\0')
		return perr(p, "%s: expected LOW-HIGH, got '%s'", kw->name, argv[0]);
	*dash = '\0';
	if (parse_uint(p, kw->name, argv[0], kw->lo, kw->hi, &lo) < 0 ||
		parse_uint(p, kw->name, dash + 1, kw->lo, kw->hi, &hi) < 0)
		return -1;
	/* parse_uint sets *out whenever it returns 0; the analyzer does not
	 * inline perr (variadic), so it cannot see that perr returns -1.
	 * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
	if (lo > hi)
		return perr(p, "%s: low port %u is above high port %u", kw->name, lo, hi);
	*field_u16(p->c, kw->off) = (uint16_t)lo;
	*field_u16(p->c, kw->off2) = (uint16_t)hi;
	return 0;
}

/* external, external-interface, socket-mark, ip-tos, tcp-keepalive,
 * tcp-user-timeout: the keyword and its words are one clause of egress's
 * grammar (the same words a rule line takes). */
static int
set_egress(struct config_parse *p, char **argv)
{
	struct config *c = p->c;
	char *words[CONFIG_MAX_ARGS + 2], msg[256];
	int *first[2] = { &p->external4_line, &p->external6_line };
	struct egress e;
	int n;

	words[0] = (char *)(uintptr_t)p->kw->name;
	for (int i = 0; i < p->argc; i++)
		words[i + 1] = argv[i];
	words[p->argc + 1] = NULL;
	egress_init(&e);
	n = egress_parse_clause(&e, EGRESS_IN_GLOBAL, words, msg, sizeof(msg));
	if (n < 0)
		return perr(p, "%s", msg);
	if (n != p->argc + 1)
		return perr(p, "%s: unexpected '%s'", p->kw->name, words[n]);
	for (int f = 0; f < 2; f++) {
		if (e.src[f].mode == EGRESS_SRC_UNSET)
			continue;
		if (c->egress.src[f].mode != EGRESS_SRC_UNSET)
			return perr(p, "duplicate 'external' %s address, first at line %d",
				family_names[f], *first[f]);
		*first[f] = p->line;
	}
	if (e.ifname[0])
		c->egress_interface_line = p->line;
	if (e.has_mark)
		c->egress_mark_line = p->line;
	egress_merge(&c->egress, &e);
	return 0;
}

/* happy-eyeballs MS | off */
static int
set_happy_eyeballs(struct config_parse *p, char **argv)
{
	if (strcmp(argv[0], "off") == 0) {
		p->c->happy_eyeballs_ms = 0;
		return 0;
	}
	return parse_uint(p, "happy-eyeballs", argv[0], 10, 10000, &p->c->happy_eyeballs_ms);
}

/* --- lines -------------------------------------------------------------- */

static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Splits one line in place into arguments, removing quotes. argv keeps at
 * most cap entries; *argc counts all of them. */
static int
split_line(struct config_parse *p, char *s, char **argv, int cap, int *argc)
{
	size_t r = 0, w = 0;

	*argc = 0;
	for (;;) {
		bool quoted = false;
		size_t start;
		char end;

		while (is_space(s[r]))
			r++;
		if (s[r] == '\0' || s[r] == '#')
			return 0;
		/* Writing trails reading (quotes are dropped), so w <= r. */
		start = w;
		while (s[r] != '\0' && (quoted || (!is_space(s[r]) && s[r] != '#'))) {
			if (s[r] == '"')
				quoted = !quoted;
			else
				s[w++] = s[r];
			r++;
		}
		if (quoted)
			return perr(p, "unterminated quote");
		end = s[r];
		s[w++] = '\0';
		if (*argc < cap)
			argv[*argc] = s + start;
		(*argc)++;
		if (end == '\0' || end == '#')
			return 0;
		r++;
	}
}

static int
run_line(struct config_parse *p, char *line)
{
	/* keyword + CONFIG_MAX_ARGS words + a NULL terminator for setters
	 * that take a word list */
	char *argv[CONFIG_MAX_ARGS + 2];
	const struct config_keyword *kw = NULL;
	unsigned nargs;
	int argc;
	size_t k;

	if (split_line(p, line, argv, CONFIG_MAX_ARGS + 1, &argc) < 0)
		return -1;
	if (argc == 0)
		return 0;
	for (k = 0; k < NKEYWORDS; k++)
		if (strcmp(argv[0], keywords[k].name) == 0) {
			kw = &keywords[k];
			break;
		}
	if (!kw)
		return perr(p, "unknown directive '%s'", argv[0]);
	nargs = (unsigned)argc - 1;
	if (nargs < kw->min_args || nargs > kw->max_args) {
		if (kw->min_args == kw->max_args)
			return perr(p, "%s: expected %u argument%s, got %u", kw->name, kw->min_args,
				kw->min_args == 1 ? "" : "s", nargs);
		return perr(p, "%s: expected %u to %u arguments, got %u", kw->name, kw->min_args,
			kw->max_args, nargs);
	}
	if (p->first[k] && !kw->repeatable)
		return perr(p, "duplicate '%s', first at line %d", kw->name, p->first[k]);
	p->kw = kw;
	p->argc = argc - 1;
	argv[argc] = NULL; /* argc <= max_args + 1 <= CONFIG_MAX_ARGS + 1 here */
	if (kw->set(p, argv + 1) < 0)
		return -1;
	if (!p->first[k])
		p->first[k] = p->line;
	return 0;
}

/* --- whole configs ------------------------------------------------------ */

/* Unsigned settings whose default is a plain number: UNSET_U from
 * config_alloc until parsed, then this in config_fill_defaults. Together
 * with that function, the one place defaults live (the man page and the
 * example repeat them). */
static const struct {
	size_t off;
	unsigned def;
} uint_defaults[] = {
	{ OFF(timeout_handshake), 10 },
	{ OFF(timeout_connect), 10 },
	{ OFF(timeout_idle), 3600 },
	{ OFF(timeout_udp), 300 },
	{ OFF(timeout_bind), 120 },
	{ OFF(shutdown_timeout), 10 },
	{ OFF(workers), 1 },
	{ OFF(relay_buffer), 262144 },
	{ OFF(max_connections_per_ip), 0 },
	{ OFF(max_sessions_per_user), 0 },
	{ OFF(max_lookups), 1024 },
	{ OFF(dns_cache_size), 10000 },
	{ OFF(dns_cache_max_ttl), 3600 },
	{ OFF(ipv6_prefix), 64 },
	{ OFF(parent_down_after), 3 },
	{ OFF(parent_down_for), 30 },
	{ OFF(log_interim), 0 },
	{ OFF(metrics_users), 100 },
	{ OFF(happy_eyeballs_ms), 250 },
};

#define NUINT_DEFAULTS (sizeof(uint_defaults) / sizeof(uint_defaults[0]))

static struct config *
config_alloc(const char *name)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->users = auth_table_new();
	c->acl = acl_new();
	c->limits = limitset_new();
	if (!c->users || !c->acl || !c->limits) {
		auth_table_free(c->users);
		acl_free(c->acl);
		limitset_free(c->limits);
		free(c);
		return NULL;
	}
	c->refs = 1;
	snprintf(c->name, sizeof(c->name), "%s", name);
	/* Unset sentinels: config_fill_defaults replaces whatever is left. */
	c->log_level = UNSET_LEVEL;
	for (size_t k = 0; k < NUINT_DEFAULTS; k++)
		*field_u(c, uint_defaults[k].off) = UNSET_U;
	c->socks4_opt = -1;
	c->relay_splice = -1;
	c->auth_fail_limit = UNSET_U;
	c->max_connections = UNSET_U;
	c->auth_workers = UNSET_U;
	c->resolve_prefer = AF_UNSPEC;
	egress_init(&c->egress);
	/* nlisten, nmethods, nnameservers 0, log_syslog 0 (stderr) and the
	 * port ranges 0,0 ("any") already mean unset. */
	return c;
}

/* Descriptors kept back from sessions: listeners, the resolver's queries,
 * splice pipes (up to RELAY_MAX_PIPES pairs), BIND listeners, UDP relay
 * sockets, logs and metrics; a quarter of a limit under 1024. */
#define CONFIG_FD_RESERVE UINT64_C(256)

/* max-connections by default: each session holds two descriptors (client
 * and target), out of the hard limit the daemon raises itself to at start,
 * less the reserve. Reaching it then refuses new clients cleanly instead of
 * failing accept and connect with EMFILE. */
static unsigned
config_default_max_connections(void)
{
	struct rlimit rl;
	uint64_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	n = rl.rlim_max == RLIM_INFINITY ? UINT64_C(1) << 20 : (uint64_t)rl.rlim_max;
	n = (n - (n < 4 * CONFIG_FD_RESERVE ? n / 4 : CONFIG_FD_RESERVE)) / 2;
	if (n == 0)
		return 1;
	return n > 10000000 ? 10000000 : (unsigned)n;
}

/* Fills what the text left unset: uint_defaults and the rest below. */
static void
config_fill_defaults(struct config *c)
{
	if (c->nlisten == 0) {
		if (addr_parse_with_port(CONFIG_DEFAULT_LISTEN, -1, &c->listen[0].addr) < 0)
			abort(); /* the constant is a valid address */
		c->listen[0].line = 0;
		c->listen[0].backlog = CONFIG_DEFAULT_BACKLOG;
		c->nlisten = 1;
	}
	if (c->nmethods == 0) {
		/* Users defined but no auth line: the administrator meant
		 * passwords; defaulting to none would make an open proxy. */
		c->methods[0] = auth_table_count(c->users) ? SOCKS_METHOD_PASSWORD
							   : SOCKS_METHOD_NONE;
		c->nmethods = 1;
	}
	if (c->log_level == UNSET_LEVEL)
		c->log_level = LOG_LVL_INFO;
	for (size_t k = 0; k < NUINT_DEFAULTS; k++)
		if (field_get(c, uint_defaults[k].off) == UNSET_U)
			*field_u(c, uint_defaults[k].off) = uint_defaults[k].def;
	if (c->max_connections == UNSET_U)
		c->max_connections = config_default_max_connections();
	if (c->auth_workers == UNSET_U) {
		/* One CPU is the relaying process's; hashing gets the rest. */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		c->auth_workers = cpus > 2 ? (unsigned)(cpus > 65 ? 64 : cpus - 1) : 1;
	}
	if (c->relay_splice < 0)
		c->relay_splice = 1;
	if (c->auth_fail_limit == UNSET_U) {
		c->auth_fail_limit = 10;
		c->auth_fail_window = 60;
		c->auth_lockout = 300;
	}
	/* SOCKS4 has no password: on by default only where no password is
	 * required anyway. */
	if (c->socks4_opt >= 0) {
		c->socks4 = c->socks4_opt;
	} else {
		c->socks4 = false;
		for (size_t i = 0; i < c->nmethods; i++)
			if (c->methods[i] == SOCKS_METHOD_NONE)
				c->socks4 = true;
	}
	if (c->state_dir[0] == '\0')
		snprintf(c->state_dir, sizeof(c->state_dir), "%s", CONFIG_DEFAULT_STATE_DIR);
	/* Keepalive on both sides of a session, as Dante has it, but with
	 * times that find a dead peer (or keep a NAT mapping) within four
	 * minutes, not Linux's two hours and more. */
	if (c->egress.keepalive < 0) {
		c->egress.keepalive = 1;
		c->egress.keepalive_idle = CONFIG_KEEPALIVE_IDLE;
		c->egress.keepalive_interval = CONFIG_KEEPALIVE_INTERVAL;
		c->egress.keepalive_count = CONFIG_KEEPALIVE_COUNT;
	}
	c->nplaintext_users = auth_table_plaintext_count(c->users);
}

/* Checks that need the whole file. */
bool
config_accepts_no_auth(const struct config *c)
{
	if (c->nmethods == 0)
		return auth_table_count(c->users) == 0;
	for (size_t i = 0; i < c->nmethods; i++)
		if (c->methods[i] == SOCKS_METHOD_NONE)
			return true;
	return false;
}

bool
config_users_unused(const struct config *c)
{
	if (auth_table_count(c->users) == 0)
		return false;
	for (size_t i = 0; i < c->nmethods; i++)
		if (c->methods[i] == SOCKS_METHOD_PASSWORD)
			return false;
	return true;
}

static int
keyword_first_line(const struct config_parse *p, const char *name)
{
	for (size_t k = 0; k < NKEYWORDS; k++)
		if (strcmp(keywords[k].name, name) == 0)
			return p->first[k];
	return 0;
}

static bool
egress_hashes_user(const struct egress *e)
{
	return e->src[EGRESS_V4].mode == EGRESS_SRC_HASH_USER ||
		e->src[EGRESS_V6].mode == EGRESS_SRC_HASH_USER;
}

/* The first line (0: none) whose settings hash users (hash_user) or set a
 * mark (otherwise). */
static int
egress_first_line(const struct config_parse *p, bool hash_user)
{
	const struct config *c = p->c;
	const struct egress *e = &c->egress;
	int line = 0;

	if (hash_user && egress_hashes_user(e))
		return e->src[EGRESS_V4].mode == EGRESS_SRC_HASH_USER ? p->external4_line
								      : p->external6_line;
	if (!hash_user && e->has_mark)
		return c->egress_mark_line;
	for (size_t i = 0; hash_user && i < c->nuser_egress; i++)
		if (egress_hashes_user(&c->user_egress[i].egress))
			return c->user_egress[i].line;
	for (size_t i = 0; i < acl_request_rule_count(c->acl); i++)
		if ((e = acl_request_rule_egress(c->acl, i, &line)) != NULL &&
			(hash_user ? egress_hashes_user(e) : e->has_mark))
			return line;
	return 0;
}

/* Outbound settings that cannot work with the rest of the file. */
static int
config_check_egress(struct config_parse *p)
{
	struct config *c = p->c;
	bool users = false;

	for (size_t i = 0; i < c->nmethods; i++)
		users = users || c->methods[i] == SOCKS_METHOD_PASSWORD;
	if (c->nmethods == 0)
		users = auth_table_count(c->users) > 0;
	if (!users && (p->line = egress_first_line(p, true)) != 0)
		return perr(p,
			"external: hash-user gives each user an address, but no session has a "
			"user: 'auth' does not include password");
	if (c->run_as_user[0] && (p->line = egress_first_line(p, false)) != 0)
		return perr(p,
			"socket-mark: SO_MARK needs CAP_NET_ADMIN, which run-as gives up; run "
			"as a service user that keeps it (systemd: User= with "
			"AmbientCapabilities=CAP_NET_ADMIN) instead of run-as");
	return 0;
}

static int
config_check(struct config_parse *p)
{
	struct config *c = p->c;

	for (size_t i = 0; i < c->nmethods; i++)
		if (c->methods[i] == SOCKS_METHOD_PASSWORD && auth_table_count(c->users) == 0) {
			/* Reported at the auth line: that is what needs changing
			 * (or users added anywhere in the file). */
			p->line = p->auth_line;
			return perr(p,
				"auth: method 'password' needs at least one user "
				"(user or users-file)");
		}
	if (acl_client_rule_count(c->acl) == 0 && config_accepts_no_auth(c)) {
		for (size_t i = 0; i < c->nlisten; i++) {
			char a[ADDR_STRLEN];
			if (addr_is_loopback(&c->listen[i].addr))
				continue;
			/* Never an open proxy by accident (issue: access control). */
			p->line = c->listen[i].line;
			return perr(p,
				"listen: %s is reachable from other hosts, clients need no "
				"password and no 'client' rule limits who may connect: that is "
				"an open proxy. Add 'client allow NETWORK' lines (the rest is "
				"denied), or 'auth password' with users",
				addr_format(&c->listen[i].addr, a, sizeof(a)));
		}
	}
	for (size_t i = 0; i < c->nlisten; i++)
		if (c->listen[i].proxy_protocol && c->nproxy_from == 0) {
			/* Without it nobody may send a header: every connection
			 * on that listener would be refused. */
			p->line = c->listen[i].line;
			return perr(p,
				"listen: proxy-protocol needs a proxy-protocol-from line "
				"naming the balancers");
		}
	if (c->workers != UNSET_U && c->workers > 1 && limitset_first_shared_line(c->limits)) {
		/* Each worker would have buckets and counters of its own: a user
		 * could use N times the rate or quota. */
		p->line = limitset_first_shared_line(c->limits);
		return perr(p,
			"limit: user, client and rule limits and quotas need workers 1 (workers "
			"%u at line %d: each worker process would count on its own)",
			c->workers, keyword_first_line(p, "workers"));
	}
	if (c->socks4_opt == 1) {
		bool none = c->nmethods == 0 && auth_table_count(c->users) == 0;
		for (size_t i = 0; i < c->nmethods; i++)
			none = none || c->methods[i] == SOCKS_METHOD_NONE;
		if (!none) {
			/* SOCKS4 would walk around the password requirement. */
			p->line = keyword_first_line(p, "socks4");
			return perr(p,
				"socks4: SOCKS4 carries no password; it needs 'auth' to "
				"include none");
		}
	}
	return config_check_egress(p);
}

struct config *
config_new_default(void)
{
	struct config *c = config_alloc("(built-in default)");

	if (c)
		config_fill_defaults(c);
	return c;
}

int
config_parse_string(const char *text, const char *name, struct config **out, char *err,
	size_t errlen)
{
	int first[NKEYWORDS] = { 0 };
	struct config_parse p;
	char *buf = NULL, *line, *nl;
	int ret = -1;

	*out = NULL;
	memset(&p, 0, sizeof(p));
	p.name = name;
	p.err = err;
	p.errlen = errlen;
	p.first = first;
	p.c = config_alloc(name);
	buf = strdup(text);
	if (!p.c || !buf) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto out;
	}
	for (line = buf; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		p.line++;
		if (run_line(&p, line) < 0)
			goto out;
	}
	if (config_check(&p) < 0)
		goto out;
	config_fill_defaults(p.c);
	*out = p.c;
	p.c = NULL;
	ret = 0;
out:
	/* The text may hold plain-text secrets. */
	if (buf) {
		explicit_bzero(buf, strlen(text));
		free(buf);
	}
	config_unref(p.c);
	return ret;
}

int
config_load_file(const char *path, struct config **out, char *err, size_t errlen)
{
	/* The file may hold secrets: stdio reads through this buffer, wiped
	 * below, not through one of its own that free() would leave as is. */
	char iobuf[4096];
	char *text = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	int ret = -1, line = 1;

	*out = NULL;
	f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			char *nt;
			if (cap >= CONFIG_FILE_MAX) {
				snprintf(err, errlen, "%s: file too large", path);
				goto out;
			}
			/* Not realloc: the old block holds the text read so far. */
			nt = malloc(cap + 65536);
			if (!nt) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto out;
			}
			if (text) {
				memcpy(nt, text, len);
				explicit_bzero(text, cap);
				free(text);
			}
			text = nt;
			cap += 65536;
		}
		n = fread(text + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				snprintf(err, errlen, "%s: %s", path, strerror(errno));
				goto out;
			}
			break;
		}
	}
	text[len] = '\0';
	/* A NUL would silently end the text early. */
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\n')
			line++;
		else if (text[i] == '\0') {
			snprintf(err, errlen, "%s:%d: NUL byte in line", path, line);
			goto out;
		}
	}
	ret = config_parse_string(text, path, out, err, errlen);
out:
	if (text) {
		explicit_bzero(text, cap);
		free(text);
	}
	fclose(f);
	explicit_bzero(iobuf, sizeof(iobuf));
	return ret;
}

struct config *
config_load(const char *path, bool explicit_path, char *err, size_t errlen)
{
	struct config *cfg = NULL;

	if (!explicit_path && access(path, F_OK) < 0 && errno == ENOENT)
		return config_new_default();
	if (config_load_file(path, &cfg, err, errlen) < 0)
		return NULL;
	return cfg;
}

struct config *
config_ref(struct config *c)
{
	c->refs++;
	return c;
}

void
config_unref(struct config *c)
{
	if (!c || --c->refs > 0)
		return;
	auth_table_free(c->users);
	acl_free(c->acl);
	limitset_free(c->limits);
	free(c->user_egress);
	free(c);
}

static void
dump_port_range(FILE *out, const char *kw, uint16_t lo, uint16_t hi)
{
	if (lo == 0 && hi == 0)
		fprintf(out, "# %s not set: any port\n", kw);
	else
		fprintf(out, "%s %u-%u\n", kw, lo, hi);
}

/* "KEYWORD ADDR" and then after, for each family of the pair that is set. */
static void
dump_addr_pair(FILE *out, const char *keyword, const char *after, const union sockaddr_any *v4,
	bool has4, const union sockaddr_any *v6, bool has6)
{
	const union sockaddr_any *addr[2] = { v4, v6 };
	bool has[2] = { has4, has6 };
	char buf[ADDR_STRLEN];

	for (int f = 0; f < 2; f++)
		if (has[f])
			fprintf(out, "%s %s%s", keyword, addr_ip_format(addr[f], buf, sizeof(buf)),
				after);
}

static void
dump_networks(FILE *out, const char *keyword, const struct acl_cidr *nets, size_t n)
{
	char buf[INET6_ADDRSTRLEN];

	if (n == 0)
		return;
	fprintf(out, "%s", keyword);
	for (size_t i = 0; i < n; i++) {
		if (nets[i].any) {
			fprintf(out, " all");
			continue;
		}
		inet_ntop(nets[i].family, nets[i].addr, buf, sizeof(buf));
		fprintf(out, " %s/%u", buf, nets[i].prefix);
	}
	fprintf(out, "\n");
}

/* Limits, quotas and live accounting (issue 18). */
static void
dump_accounting(const struct config *c, FILE *out)
{
	limitset_dump(c->limits, out);
	fprintf(out, "state-dir %s\n", c->state_dir);
	fprintf(out, "log-interim %u\n", c->log_interim);
	if (c->control[0])
		fprintf(out, "control %s\n", c->control);
	else
		fprintf(out, "# control not set: no control socket\n");
	fprintf(out, "metrics-users %u\n", c->metrics_users);
}

static void
dump_rule_rate(int line, FILE *out, void *arg)
{
	limitset_dump_rule_rate(arg, line, out);
}

/* The global outbound settings, a comment for each one not set. */
static void
dump_egress(const struct config *c, FILE *out)
{
	const struct egress *e = &c->egress;

	if (e->src[EGRESS_V4].mode == EGRESS_SRC_UNSET &&
		e->src[EGRESS_V6].mode == EGRESS_SRC_UNSET)
		fprintf(out, "# external not set: chosen by the kernel\n");
	if (!e->ifname[0])
		fprintf(out, "# external-interface not set: the routing table chooses\n");
	if (!e->has_mark)
		fprintf(out, "# socket-mark not set\n");
	if (e->tos < 0)
		fprintf(out, "# ip-tos not set: the kernel's\n");
	if (e->user_timeout_ms < 0)
		fprintf(out, "# tcp-user-timeout not set: the kernel's\n");
	egress_dump(e, out, "", "\n");
	if (c->happy_eyeballs_ms)
		fprintf(out, "happy-eyeballs %u\n", c->happy_eyeballs_ms);
	else
		fprintf(out, "happy-eyeballs off\n");
}

static void
dump_resolve_prefer(const struct config *c, FILE *out)
{
	if (c->resolve_prefer == AF_UNSPEC)
		fprintf(out,
			"# resolve-prefer not set: IPv6 first for Happy Eyeballs, else IPv4\n");
	else
		fprintf(out, "resolve-prefer %s\n",
			choice_word("resolve-prefer", c->resolve_prefer));
}

/* Keyword-table order; user secrets never appear, only how many users. */
void
config_dump(const struct config *c, FILE *out)
{
	char buf[ADDR_STRLEN];
	size_t nusers = auth_table_count(c->users);

	fprintf(out, "# socks5d effective configuration\n");
	for (size_t i = 0; i < c->nlisten; i++) {
		fprintf(out, "listen %s%s", addr_format(&c->listen[i].addr, buf, sizeof(buf)),
			c->listen[i].proxy_protocol ? " proxy-protocol" : "");
		if (c->listen[i].backlog != CONFIG_DEFAULT_BACKLOG)
			fprintf(out, " backlog %u", c->listen[i].backlog);
		fprintf(out, "\n");
	}
	fprintf(out, "auth");
	for (size_t i = 0; i < c->nmethods; i++)
		fprintf(out, " %s", c->methods[i] == SOCKS_METHOD_PASSWORD ? "password" : "none");
	fprintf(out, "\n");
	fprintf(out, "# %zu user%s (%zu with a plain-text secret); secrets are not shown\n", nusers,
		nusers == 1 ? "" : "s", c->nplaintext_users);
	if (c->users_file[0])
		fprintf(out, "users-file %s%s\n", c->users_file,
			c->users_file_watch ? " watch" : "");
	fprintf(out, "log %s\n", choice_word("log", c->log_syslog));
	fprintf(out, "log-level %s\n", log_level_name(c->log_level));
	for (size_t k = 0; k < TIMEOUT_COUNT; k++) {
		unsigned v = field_get(c, timeouts[k].off);

		if (k == TIMEOUT_DNS && v == 0)
			fprintf(out,
				"# timeout dns not set: resolv.conf's timeout option, else 5\n");
		else
			fprintf(out, "timeout %s %u\n", timeouts[k].name, v);
	}
	fprintf(out, "shutdown-timeout %u\n", c->shutdown_timeout);
	fprintf(out, "socks4 %s\n", choice_word("socks4", c->socks4));
	fprintf(out, "workers %u\n", c->workers);
	fprintf(out, "relay-buffer %u\n", c->relay_buffer);
	fprintf(out, "relay-splice %s\n", choice_word("relay-splice", c->relay_splice));
	if (c->nnameservers == 0)
		fprintf(out, "# nameserver not set: /etc/resolv.conf is used\n");
	for (size_t i = 0; i < c->nnameservers; i++)
		fprintf(out, "nameserver %s\n", addr_format(&c->nameservers[i], buf, sizeof(buf)));
	dump_resolve_prefer(c, out);
	fprintf(out, "dns-cache-size %u\n", c->dns_cache_size);
	fprintf(out, "dns-cache-max-ttl %u\n", c->dns_cache_max_ttl);
	if (c->dns_attempts == 0)
		fprintf(out, "# dns-attempts not set: resolv.conf's attempts option, else 2\n");
	else
		fprintf(out, "dns-attempts %u\n", c->dns_attempts);
	dump_port_range(out, "udp-port-range", c->udp_port_lo, c->udp_port_hi);
	dump_port_range(out, "bind-port-range", c->bind_port_lo, c->bind_port_hi);
	dump_egress(c, out);
	dump_addr_pair(out, "announce", "\n", &c->announce4, c->has_announce4, &c->announce6,
		c->has_announce6);
	dump_networks(out, "proxy-protocol-from", c->proxy_from, c->nproxy_from);
	if (c->has_metrics)
		fprintf(out, "metrics %s\n", addr_format(&c->metrics, buf, sizeof(buf)));
	for (size_t i = 0; i < c->nuser_egress; i++) {
		fprintf(out, "# user %s:", c->user_egress[i].name);
		egress_dump(&c->user_egress[i].egress, out, " ", "");
		fprintf(out, "\n");
	}
	acl_dump_with(c->acl, out, dump_rule_rate, c->limits);
	fprintf(out, "max-connections %u\n", c->max_connections);
	fprintf(out, "max-connections-per-ip %u\n", c->max_connections_per_ip);
	fprintf(out, "max-sessions-per-user %u\n", c->max_sessions_per_user);
	fprintf(out, "max-lookups %u\n", c->max_lookups);
	fprintf(out, "auth-fail-limit %u %u %u\n", c->auth_fail_limit, c->auth_fail_window,
		c->auth_lockout);
	dump_networks(out, "auth-fail-exempt", c->auth_exempt, c->nauth_exempt);
	fprintf(out, "auth-workers %u\n", c->auth_workers);
	fprintf(out, "ipv6-prefix %u\n", c->ipv6_prefix);
	fprintf(out, "parent-down-after %u\n", c->parent_down_after);
	fprintf(out, "parent-down-for %u\n", c->parent_down_for);
	if (c->run_as_user[0])
		fprintf(out, "run-as %s%s%s\n", c->run_as_user, c->run_as_group[0] ? ":" : "",
			c->run_as_group);
	dump_accounting(c, out);
}

const char *const *
config_keywords(void)
{
	static const char *names[NKEYWORDS + 1];

	for (size_t k = 0; k < NKEYWORDS; k++)
		names[k] = keywords[k].name;
	names[NKEYWORDS] = NULL;
	return names;
}
