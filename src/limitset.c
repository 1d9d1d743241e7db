/*
 * limitset: `limit` lines, rule rate clauses and quota-timezone, from words
 * to data and back. Values are decimal numbers with at most three digits
 * after the point and a 1000-based unit, kept as whole bits per second or
 * bytes, so a value prints back exactly (socks5d -T reads as it wrote).
 * Enforcement is elsewhere: this module only says what applies.
 */
#include "limitset.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strnum.h"

/* Longest user name (RFC 1929 ULEN). */
#define LIMITSET_USER_MAX 255

struct limitset_unit {
	const char *name;
	uint64_t mult;
};

/* Largest first: the formatters take the first that fits. */
static const struct limitset_unit rate_units[] = {
	{ "gbit", UINT64_C(1000000000) },
	{ "mbit", UINT64_C(1000000) },
	{ "kbit", UINT64_C(1000) },
};

static const struct limitset_unit amount_units[] = {
	{ "TB", UINT64_C(1000000000000) },
	{ "GB", UINT64_C(1000000000) },
	{ "MB", UINT64_C(1000000) },
};

#define NUNITS 3

static const char *const period_names[] = {
	[LIMITSET_DAY] = "day",
	[LIMITSET_WEEK] = "week",
	[LIMITSET_MONTH] = "month",
};

static void limitset_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
limitset_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --- values --------------------------------------------------------------- */

/*
 * "D[.DDD]UNIT" with a unit of units[] (case-insensitive): the value in
 * thousandths of the unit times the unit / 1000, which is whole because
 * every unit is a multiple of 1000. 0 and values over max are refused.
 * Returns 0, or -1 (the caller words the message).
 */
static int
parse_decimal(const char *s, const struct limitset_unit *units, uint64_t max, uint64_t *out)
{
	size_t ilen = strspn(s, "0123456789"), flen = 0;
	const char *unit = s + ilen;
	uint64_t whole, frac = 0, milli;

	if (*unit == '.') {
		flen = strspn(unit + 1, "0123456789");
		if (flen == 0 || flen > 3)
			return -1;
		unit += 1 + flen;
	}
	if (ilen == 0 || strnum_parse_u64_span(s, ilen, 0, UINT64_MAX / 1000, &whole) != STRNUM_OK)
		return -1;
	if (flen && strnum_parse_u64_span(s + ilen + 1, flen, 0, 999, &frac) != STRNUM_OK)
		return -1;
	for (size_t k = flen; k < 3; k++)
		frac *= 10;
	milli = whole * 1000 + frac;
	for (size_t i = 0; i < NUNITS; i++) {
		uint64_t per = units[i].mult / 1000 ? units[i].mult / 1000 : 1;
		if (strcasecmp(unit, units[i].name) != 0)
			continue;
		if (milli == 0 || milli > max / per)
			return -1;
		*out = milli * per;
		return 0;
	}
	return -1;
}

int
limitset_parse_rate(const char *s, uint64_t *bits, char *err, size_t errlen)
{
	uint64_t v;

	if (strcmp(s, "unlimited") == 0) {
		*bits = 0;
		return 0;
	}
	if (parse_decimal(s, rate_units, LIMITSET_RATE_MAX, &v) < 0 || v < LIMITSET_RATE_MIN) {
		limitset_err(err, errlen,
			"bad rate '%s' (expected a number with kbit, mbit or gbit from 1kbit to "
			"1000gbit, or unlimited)",
			s);
		return -1;
	}
	*bits = v;
	return 0;
}

int
limitset_parse_amount(const char *s, uint64_t *bytes, char *err, size_t errlen)
{
	if (parse_decimal(s, amount_units, LIMITSET_AMOUNT_MAX, bytes) < 0) {
		limitset_err(err, errlen,
			"bad amount '%s' (expected a number with MB, GB or TB, up to "
			"1000000TB)",
			s);
		return -1;
	}
	return 0;
}

int
limitset_parse_period(const char *s, enum limitset_period *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(period_names) / sizeof(period_names[0]); i++)
		if (strcmp(s, period_names[i]) == 0) {
			*p = (enum limitset_period)i;
			return 0;
		}
	limitset_err(err, errlen, "bad period '%s' (expected day, week or month)", s);
	return -1;
}

int
limitset_parse_tz(const char *s, int *minutes, char *err, size_t errlen)
{
	uint64_t h, m;

	if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' ||
		strnum_parse_u64_span(s + 1, 2, 0, 14, &h) != STRNUM_OK ||
		strnum_parse_u64_span(s + 4, 2, 0, 59, &m) != STRNUM_OK ||
		h * 60 + m > LIMITSET_TZ_MAX_MIN) {
		limitset_err(err, errlen,
			"bad offset '%s' (expected +HH:MM or -HH:MM, from -14:00 to +14:00)", s);
		return -1;
	}
	*minutes = (int)(h * 60 + m) * (s[0] == '-' ? -1 : 1);
	return 0;
}

/* v in the largest unit that shows it exactly with three decimals at most. */
static const char *
format_decimal(uint64_t v, const struct limitset_unit *units, char *out, size_t cap)
{
	for (size_t i = 0; i < NUNITS; i++) {
		/* Every unit is 1000 or more: per is at least 1. */
		uint64_t per = units[i].mult / 1000 ? units[i].mult / 1000 : 1;
		uint64_t whole = v / units[i].mult, frac = v % units[i].mult / per;
		char f[8] = "";

		if ((whole == 0 && i + 1 < NUNITS) || v % per != 0)
			continue;
		if (frac) {
			snprintf(f, sizeof(f), ".%03u", (unsigned)frac);
			for (size_t e = strlen(f); f[e - 1] == '0'; e--)
				f[e - 1] = '\0';
		}
		snprintf(out, cap, "%llu%s%s", (unsigned long long)whole, f, units[i].name);
		return out;
	}
	snprintf(out, cap, "?");
	return out;
}

/* 0 is "unlimited" (a rate or an amount of 0 means no limit). */
static const char *
format_limit(uint64_t v, const struct limitset_unit *units, char *out, size_t cap)
{
	if (v == 0) {
		snprintf(out, cap, "unlimited");
		return out;
	}
	return format_decimal(v, units, out, cap);
}

const char *
limitset_format_rate(uint64_t bits, char *out, size_t cap)
{
	return format_limit(bits, rate_units, out, cap);
}

const char *
limitset_format_amount(uint64_t bytes, char *out, size_t cap)
{
	return format_limit(bytes, amount_units, out, cap);
}

const char *
limitset_period_name(enum limitset_period p)
{
	return (size_t)p < sizeof(period_names) / sizeof(period_names[0]) ? period_names[p] : "?";
}

const char *
limitset_format_tz(int minutes, char *out, size_t cap)
{
	unsigned a = (unsigned)(minutes < 0 ? -minutes : minutes) % (100 * 60);

	snprintf(out, cap, "%c%02u:%02u", minutes < 0 ? '-' : '+', a / 60, a % 60);
	return out;
}

/* --- lines ---------------------------------------------------------------- */

struct limitset *
limitset_new(void)
{
	return calloc(1, sizeof(struct limitset));
}

void
limitset_free(struct limitset *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].user);
	for (size_t i = 0; i < l->nrules; i++)
		free(l->rules[i].key);
	free(l->v);
	free(l->rules);
	free(l);
}

bool
limitset_empty(const struct limitset *l)
{
	return l->n == 0 && l->nrules == 0;
}

bool
limitset_have_quota(const struct limitset *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].is_quota)
			return true;
	return false;
}

int
limitset_first_shared_line(const struct limitset *l)
{
	int first = 0;

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].scope != LIMITSET_SESSION && (!first || l->v[i].line < first))
			first = l->v[i].line;
	for (size_t i = 0; i < l->nrules; i++)
		if (!first || l->rules[i].line < first)
			first = l->rules[i].line;
	return first;
}

/* "UP DOWN" at argv[0..1]. */
static int
parse_rate_pair(char **argv, struct limitset_rate *r, char *err, size_t errlen)
{
	if (!argv[0] || !argv[1]) {
		limitset_err(err, errlen, "rate needs two values: UP DOWN");
		return -1;
	}
	if (limitset_parse_rate(argv[0], &r->up, err, errlen) < 0 ||
		limitset_parse_rate(argv[1], &r->down, err, errlen) < 0)
		return -1;
	return 0;
}

/* quota AMOUNT PERIOD [then close | then rate UP DOWN], or quota
 * unlimited; argv starts at AMOUNT. */
static int
parse_quota(char **argv, struct limitset_quota *q, char *err, size_t errlen)
{
	size_t n = 0;

	while (argv[n])
		n++;
	memset(q, 0, sizeof(*q));
	if (n == 1 && strcmp(argv[0], "unlimited") == 0)
		return 0;
	if (n < 2) {
		limitset_err(err, errlen, "quota needs AMOUNT PERIOD (or unlimited)");
		return -1;
	}
	if (limitset_parse_amount(argv[0], &q->bytes, err, errlen) < 0 ||
		limitset_parse_period(argv[1], &q->period, err, errlen) < 0)
		return -1;
	if (n == 2)
		return 0;
	if (strcmp(argv[2], "then") != 0 || n < 4) {
		limitset_err(err, errlen,
			"expected 'then close' or 'then rate UP DOWN' after the period");
		return -1;
	}
	if (strcmp(argv[3], "close") == 0 && n == 4)
		return 0;
	if (strcmp(argv[3], "rate") == 0 && n == 6) {
		q->then_rate = true;
		return parse_rate_pair(argv + 4, &q->after, err, errlen);
	}
	limitset_err(err, errlen, "expected 'then close' or 'then rate UP DOWN' after the period");
	return -1;
}

/* Names must print back into a config word (as acl's user names). */
static int
check_user(const char *name, char *err, size_t errlen)
{
	const unsigned char *p = (const unsigned char *)name;

	for (; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '"')
			break;
	if (*p || name[0] == '\0' || strlen(name) > LIMITSET_USER_MAX) {
		limitset_err(err, errlen, "bad user name '%s'", name);
		return -1;
	}
	return 0;
}

/* Whether a and b limit the same thing (a second such line is a mistake). */
static bool
same_target(const struct limitset_line *a, const struct limitset_line *b)
{
	if (a->scope != b->scope || a->is_quota != b->is_quota)
		return false;
	if (a->scope == LIMITSET_USER)
		return strcmp(a->user, b->user) == 0;
	if (a->scope == LIMITSET_CLIENT)
		return a->net.any == b->net.any && a->net.family == b->net.family &&
			a->net.prefix == b->net.prefix && memcmp(a->net.addr, b->net.addr, 16) == 0;
	return true;
}

/* The scope words: session | user NAME | client NETWORK. Returns the
 * index of the word after them, or -1. */
static int
parse_scope(char **argv, struct limitset_line *ln, char *err, size_t errlen)
{
	if (strcmp(argv[0], "session") == 0) {
		ln->scope = LIMITSET_SESSION;
		return 1;
	}
	if (strcmp(argv[0], "user") != 0 && strcmp(argv[0], "client") != 0) {
		limitset_err(err, errlen, "expected session, user or client, got '%s'", argv[0]);
		return -1;
	}
	if (!argv[1]) {
		limitset_err(err, errlen, "missing %s after '%s'",
			argv[0][0] == 'u' ? "NAME" : "NETWORK", argv[0]);
		return -1;
	}
	if (argv[0][0] == 'u') {
		ln->scope = LIMITSET_USER;
		if (check_user(argv[1], err, errlen) < 0 || !(ln->user = strdup(argv[1]))) {
			if (!ln->user && err[0] == '\0')
				limitset_err(err, errlen, "out of memory");
			return -1;
		}
		return 2;
	}
	ln->scope = LIMITSET_CLIENT;
	if (acl_parse_cidr(argv[1], &ln->net) < 0) {
		limitset_err(err, errlen, "bad network '%s' (expected ADDR/PREFIX, ADDR or all)",
			argv[1]);
		return -1;
	}
	return 2;
}

static int
parse_line(char **argv, struct limitset_line *ln, char *err, size_t errlen)
{
	int i;

	if (!argv[0]) {
		limitset_err(err, errlen, "expected session, user or client");
		return -1;
	}
	if ((i = parse_scope(argv, ln, err, errlen)) < 0)
		return -1;
	if (argv[i] && strcmp(argv[i], "rate") == 0) {
		if (argv[i + 1] && argv[i + 2] && argv[i + 3]) {
			limitset_err(err, errlen, "unexpected '%s' after the rates", argv[i + 3]);
			return -1;
		}
		return parse_rate_pair(argv + i + 1, &ln->rate, err, errlen);
	}
	if (argv[i] && strcmp(argv[i], "quota") == 0 && ln->scope != LIMITSET_SESSION) {
		ln->is_quota = true;
		return parse_quota(argv + i + 1, &ln->quota, err, errlen);
	}
	limitset_err(err, errlen, "expected %s after '%s'",
		ln->scope == LIMITSET_SESSION ? "rate" : "rate or quota", argv[i - 1]);
	return -1;
}

static const char *
scope_words(const struct limitset_line *ln, char *out, size_t cap)
{
	char net[INET6_ADDRSTRLEN + 8];

	switch (ln->scope) {
	case LIMITSET_USER:
		snprintf(out, cap, "user %s", ln->user);
		break;
	case LIMITSET_CLIENT:
		if (ln->net.any)
			snprintf(net, sizeof(net), "all");
		else if (inet_ntop(ln->net.family, ln->net.addr, net, sizeof(net)))
			snprintf(net + strlen(net), sizeof(net) - strlen(net), "/%u",
				ln->net.prefix);
		snprintf(out, cap, "client %s", net);
		break;
	default:
		snprintf(out, cap, "session");
		break;
	}
	return out;
}

int
limitset_add_line(struct limitset *l, char **argv, int line, char *err, size_t errlen)
{
	struct limitset_line ln, *grown;
	char what[300];

	memset(&ln, 0, sizeof(ln));
	ln.line = line;
	err[0] = '\0';
	if (parse_line(argv, &ln, err, errlen) < 0) {
		free(ln.user);
		return -1;
	}
	for (size_t i = 0; i < l->n; i++)
		if (same_target(&l->v[i], &ln)) {
			limitset_err(err, errlen, "duplicate '%s %s', first at line %d",
				scope_words(&ln, what, sizeof(what)),
				ln.is_quota ? "quota" : "rate", l->v[i].line);
			free(ln.user);
			return -1;
		}
	grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
	if (!grown) {
		limitset_err(err, errlen, "out of memory");
		free(ln.user);
		return -1;
	}
	l->v = grown;
	l->v[l->n++] = ln;
	return 0;
}

int
limitset_add_rule_rate(struct limitset *l, int line, const char *up, const char *down,
	const char *key, char *err, size_t errlen)
{
	struct limitset_rule_rate rr, *grown;
	char *words[3] = { (char *)(uintptr_t)up, (char *)(uintptr_t)down, NULL };

	memset(&rr, 0, sizeof(rr));
	rr.line = line;
	if (parse_rate_pair(words, &rr.rate, err, errlen) < 0)
		return -1;
	if (!(rr.key = strdup(key)) ||
		!(grown = realloc(l->rules, (l->nrules + 1) * sizeof(*grown)))) {
		free(rr.key);
		limitset_err(err, errlen, "out of memory");
		return -1;
	}
	l->rules = grown;
	l->rules[l->nrules++] = rr;
	return 0;
}

int
limitset_set_timezone(struct limitset *l, const char *s, char *err, size_t errlen)
{
	if (limitset_parse_tz(s, &l->tz_min, err, errlen) < 0)
		return -1;
	l->tz_set = true;
	return 0;
}

/* --- lookups -------------------------------------------------------------- */

void
limitset_match(const struct limitset *l, const char *user, const union sockaddr_any *client,
	int rule_line, struct limitset_match *m)
{
	const struct limitset_line *user_any[2] = { NULL, NULL };

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < l->n; i++) {
		const struct limitset_line *ln = &l->v[i];
		const struct limitset_line **slot;

		switch (ln->scope) {
		case LIMITSET_SESSION:
			m->session = ln;
			break;
		case LIMITSET_USER:
			if (!user)
				break;
			if (strcmp(ln->user, "*") == 0)
				user_any[ln->is_quota] = ln;
			else if (strcmp(ln->user, user) == 0)
				*(ln->is_quota ? &m->user_quota : &m->user_rate) = ln;
			break;
		case LIMITSET_CLIENT:
			slot = ln->is_quota ? &m->client_quota : &m->client_rate;
			if (!*slot && client && acl_cidr_match(&ln->net, client))
				*slot = ln;
			break;
		default:
			break;
		}
	}
	if (!m->user_rate)
		m->user_rate = user_any[0];
	if (!m->user_quota)
		m->user_quota = user_any[1];
	m->rule = limitset_rule_at(l, rule_line);
}

const struct limitset_rule_rate *
limitset_rule_at(const struct limitset *l, int line)
{
	for (size_t i = 0; line > 0 && i < l->nrules; i++)
		if (l->rules[i].line == line)
			return &l->rules[i];
	return NULL;
}

/* --- dump ----------------------------------------------------------------- */

static void
dump_rate_pair(const struct limitset_rate *r, FILE *out)
{
	char up[LIMITSET_VALUE_STRLEN], down[LIMITSET_VALUE_STRLEN];

	fprintf(out, "rate %s %s", limitset_format_rate(r->up, up, sizeof(up)),
		limitset_format_rate(r->down, down, sizeof(down)));
}

static void
dump_quota(const struct limitset_quota *q, FILE *out)
{
	char amount[LIMITSET_VALUE_STRLEN];

	fprintf(out, "quota %s", limitset_format_amount(q->bytes, amount, sizeof(amount)));
	if (q->bytes == 0)
		return;
	fprintf(out, " %s then ", limitset_period_name(q->period));
	if (q->then_rate)
		dump_rate_pair(&q->after, out);
	else
		fprintf(out, "close");
}

void
limitset_dump(const struct limitset *l, FILE *out)
{
	char what[300], tz[8];

	for (size_t i = 0; i < l->n; i++) {
		const struct limitset_line *ln = &l->v[i];
		bool quote = ln->user && strpbrk(ln->user, " \t#") != NULL;

		scope_words(ln, what, sizeof(what));
		if (quote)
			fprintf(out, "limit user \"%s\" ", ln->user);
		else
			fprintf(out, "limit %s ", what);
		if (ln->is_quota)
			dump_quota(&ln->quota, out);
		else
			dump_rate_pair(&ln->rate, out);
		fputc('\n', out);
	}
	fprintf(out, "quota-timezone %s\n", limitset_format_tz(l->tz_min, tz, sizeof(tz)));
}

void
limitset_dump_rule_rate(const struct limitset *l, int line, FILE *out)
{
	const struct limitset_rule_rate *rr = limitset_rule_at(l, line);

	if (!rr)
		return;
	fputc(' ', out);
	dump_rate_pair(&rr->rate, out);
}
