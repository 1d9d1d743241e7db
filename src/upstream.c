/*
 * upstream: parent URLs and the client side of SOCKS5, SOCKS4/4a and HTTP
 * CONNECT as a machine: start queues the first message, feed takes the
 * parent's bytes one message at a time and queues the next. Pure: no I/O,
 * no allocation, no logging.
 */
#include "upstream.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "strnum.h"

static const struct {
	const char *scheme;
	enum upstream_proto proto;
} upstream_schemes[] = {
	{ "socks5://", UPSTREAM_SOCKS5 },
	{ "socks4://", UPSTREAM_SOCKS4 },
	{ "socks4a://", UPSTREAM_SOCKS4 },
	{ "http://", UPSTREAM_HTTP },
};
#define UPSTREAM_NSCHEMES (sizeof(upstream_schemes) / sizeof(upstream_schemes[0]))

static void upstream_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
upstream_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *
upstream_proto_str(enum upstream_proto p)
{
	static const char *const names[] = { "direct", "socks5", "socks4", "http" };

	return strnum_name(names, sizeof(names) / sizeof(names[0]), (size_t)p, "?");
}

bool
upstream_can(const struct upstream *u, uint8_t cmd)
{
	switch (u->proto) {
	case UPSTREAM_DIRECT:
	case UPSTREAM_SOCKS5:
		return true;
	case UPSTREAM_SOCKS4:
		return cmd == SOCKS_CMD_CONNECT || cmd == SOCKS_CMD_BIND;
	case UPSTREAM_HTTP:
		return cmd == SOCKS_CMD_CONNECT;
	}
	return false;
}

/* --- the URL --------------------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..len) with %XX decoded into out (NUL-terminated, at most 255 bytes).
 * Returns the decoded length, or -1 (a bad escape, a NUL, too long). */
static int
percent_decode(const char *s, size_t len, char out[256])
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == 0 || n == 255)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return (int)n;
}

/* A host name as DNS and an HTTP request line can both carry it. */
static bool
host_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

/* user[:pass] before the '@'. */
static int
parse_userinfo(const char *s, size_t len, struct upstream *u, char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon ? (size_t)(colon - s) : len;
	int n;

	if ((n = percent_decode(s, ulen, u->user)) <= 0) {
		upstream_err(err, errlen, "bad parent user name (1-255 bytes, %%XX escapes)");
		return -1;
	}
	u->ulen = (uint8_t)n;
	u->has_user = true;
	if (!colon)
		return 0;
	if (u->proto == UPSTREAM_SOCKS4) {
		upstream_err(err, errlen, "a socks4 parent takes a user id but no password");
		return -1;
	}
	if ((n = percent_decode(colon + 1, len - ulen - 1, u->pass)) < 0) {
		upstream_err(err, errlen, "bad parent password (0-255 bytes, %%XX escapes)");
		return -1;
	}
	u->plen = (uint8_t)n;
	return 0;
}

/* host:port or [v6]:port. */
static int
parse_hostport(const char *s, size_t len, struct upstream *u, char *err, size_t errlen)
{
	const char *host = s, *port;
	size_t hlen;
	uint64_t v;
	struct in6_addr a6;

	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close || close + 1 == s + len || close[1] != ':') {
			upstream_err(err, errlen, "expected [IPv6]:PORT");
			return -1;
		}
		host = s + 1;
		hlen = (size_t)(close - host);
		port = close + 2;
	} else {
		const char *colon = memrchr(s, ':', len);

		if (!colon) {
			upstream_err(err, errlen, "a parent needs a port: HOST:PORT");
			return -1;
		}
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen >= sizeof(u->host)) {
		upstream_err(err, errlen, "parent host name too long");
		return -1;
	}
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	if (host != s ? inet_pton(AF_INET6, u->host, &a6) != 1 : !host_name_ok(host, hlen)) {
		upstream_err(err, errlen, "bad parent host '%s'", u->host);
		return -1;
	}
	if (strnum_parse_u64_span(port, (size_t)(s + len - port), 1, 65535, &v) != STRNUM_OK) {
		upstream_err(err, errlen, "bad parent port '%.*s' (1-65535)", (int)(s + len - port),
			port);
		return -1;
	}
	u->port = (uint16_t)v;
	return 0;
}

static void
upstream_make_label(struct upstream *u)
{
	bool v6 = strchr(u->host, ':') != NULL;

	snprintf(u->label, sizeof(u->label), "%s://%s%s%s:%u", upstream_proto_str(u->proto),
		v6 ? "[" : "", u->host, v6 ? "]" : "", (unsigned)u->port);
}

int
upstream_parse(const char *s, struct upstream *u, char *err, size_t errlen)
{
	const char *rest = NULL, *at;
	size_t i, len;

	memset(u, 0, sizeof(*u));
	if (strcmp(s, "direct") == 0) {
		snprintf(u->label, sizeof(u->label), "direct");
		return 0;
	}
	for (i = 0; i < UPSTREAM_NSCHEMES && !rest; i++)
		if (strncmp(s, upstream_schemes[i].scheme, strlen(upstream_schemes[i].scheme)) ==
			0) {
			u->proto = upstream_schemes[i].proto;
			rest = s + strlen(upstream_schemes[i].scheme);
		}
	if (!rest) {
		upstream_err(err, errlen,
			"unknown parent '%s' (expected direct, socks5://, socks4:// or http://)",
			s);
		return -1;
	}
	len = strlen(rest);
	if (u->proto == UPSTREAM_HTTP && len > 0 && rest[len - 1] == '/')
		len--;
	if ((at = memrchr(rest, '@', len)) != NULL) {
		if (parse_userinfo(rest, (size_t)(at - rest), u, err, errlen) < 0)
			return -1;
		len -= (size_t)(at + 1 - rest);
		rest = at + 1;
	}
	if (parse_hostport(rest, len, u, err, errlen) < 0)
		return -1;
	upstream_make_label(u);
	return 0;
}

void
upstream_format(const struct upstream *u, char *out, size_t cap)
{
	const char *scheme = upstream_proto_str(u->proto);
	size_t slen = strlen(scheme) + 3;

	if (u->proto == UPSTREAM_DIRECT || !u->has_user) {
		snprintf(out, cap, "%s", u->label);
		return;
	}
	/* The user name is printed as written only when it needs no escape. */
	snprintf(out, cap, "%s://%s%s@%s", scheme, host_name_ok(u->user, u->ulen) ? u->user : "%2A",
		u->proto == UPSTREAM_SOCKS4 ? "" : ":***", u->label + slen);
}

/* --- messages we send ------------------------------------------------------ */

static int
hs_queue(struct upstream_hs *h, const void *p, size_t n)
{
	if (n > sizeof(h->out) - h->out_len)
		return -1;
	memcpy(h->out + h->out_len, p, n);
	h->out_len += n;
	return 0;
}

/* RFC 1928 §3: we offer no authentication, and passwords when we have one. */
static void
queue_socks5_greeting(struct upstream_hs *h)
{
	uint8_t m[4] = { SOCKS_VERSION, 1, SOCKS_METHOD_NONE, SOCKS_METHOD_PASSWORD };

	if (h->u->has_user)
		m[1] = 2;
	(void)hs_queue(h, m, 2 + (size_t)m[1]);
}

/* RFC 1929 §2: VER ULEN UNAME PLEN PASSWD. */
static void
queue_userpass(struct upstream_hs *h)
{
	uint8_t m[PROTO_USERPASS_MAX];
	const struct upstream *u = h->u;

	m[0] = SOCKS_AUTH_VERSION;
	m[1] = u->ulen;
	memcpy(m + 2, u->user, u->ulen);
	m[2 + u->ulen] = u->plen;
	memcpy(m + 3 + u->ulen, u->pass, u->plen);
	(void)hs_queue(h, m, 3 + (size_t)u->ulen + u->plen);
}

static void
queue_socks5_request(struct upstream_hs *h)
{
	uint8_t m[PROTO_REQUEST_MAX] = { SOCKS_VERSION, h->cmd, 0 };
	size_t n = proto_encode_addr(m + 3, sizeof(m) - 3, &h->dst);

	(void)hs_queue(h, m, 3 + n);
}

static int
hs_cannot(struct upstream_hs *h, uint8_t rep, const char *why)
{
	h->phase = UPSTREAM_PH_DONE;
	h->res.rep = rep;
	h->res.why = why;
	return -1;
}

/* VN CD DSTPORT DSTIP USERID NUL [NAME NUL] (4a: DSTIP 0.0.0.1). */
static int
queue_socks4_request(struct upstream_hs *h)
{
	uint8_t m[PROTO_SOCKS4_REQUEST_MAX] = { SOCKS4_VERSION, h->cmd };
	const struct socks_addr *d = &h->dst;
	size_t n = 8;

	if (d->atyp == SOCKS_ATYP_IPV6)
		return hs_cannot(h, SOCKS_REP_ATYP_NOT_SUPPORTED,
			"a socks4 parent cannot reach IPv6");
	m[2] = (uint8_t)(d->port >> 8);
	m[3] = (uint8_t)d->port;
	if (d->atyp == SOCKS_ATYP_IPV4)
		memcpy(m + 4, d->ip.ipv4, 4);
	else
		m[7] = 1;
	memcpy(m + n, h->u->user, h->u->ulen);
	n += h->u->ulen;
	m[n++] = 0;
	if (d->atyp == SOCKS_ATYP_DOMAIN) {
		memcpy(m + n, d->name, d->name_len);
		n += d->name_len;
		m[n++] = 0;
	}
	return hs_queue(h, m, n);
}

static size_t
base64(const uint8_t *p, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
	size_t i, o = 0;

	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[i + 1 < n ? (v >> 6) & 63 : 64]; /* 64: the '=' pad */
		out[o++] = tab[i + 2 < n ? v & 63 : 64];
	}
	out[o] = '\0';
	return o;
}

/* CONNECT host:port HTTP/1.1, Host, and Basic credentials (RFC 9110 §9.3.6,
 * RFC 7617). A name goes through only if it cannot break the request. */
static int
queue_http_connect(struct upstream_hs *h)
{
	const struct socks_addr *d = &h->dst;
	const struct upstream *u = h->u;
	char host[256], auth[740], cred[512], msg[UPSTREAM_OUT_MAX];
	int n;

	if (d->atyp == SOCKS_ATYP_DOMAIN) {
		if (!host_name_ok(d->name, d->name_len))
			return hs_cannot(h, SOCKS_REP_HOST_UNREACHABLE,
				"name not valid for an http parent");
		snprintf(host, sizeof(host), "%s", d->name);
	} else if (d->atyp == SOCKS_ATYP_IPV4) {
		inet_ntop(AF_INET, d->ip.ipv4, host, sizeof(host));
	} else {
		char a6[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, d->ip.ipv6, a6, sizeof(a6));
		snprintf(host, sizeof(host), "[%s]", a6);
	}
	auth[0] = '\0';
	if (u->has_user) {
		char b64[700];

		memcpy(cred, u->user, u->ulen);
		cred[u->ulen] = ':';
		memcpy(cred + u->ulen + 1, u->pass, u->plen);
		base64((const uint8_t *)cred, (size_t)u->ulen + 1 + u->plen, b64);
		snprintf(auth, sizeof(auth), "Proxy-Authorization: Basic %s\r\n", b64);
	}
	n = snprintf(msg, sizeof(msg), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n", host,
		(unsigned)d->port, host, (unsigned)d->port, auth);
	return hs_queue(h, msg, (size_t)n);
}

int
upstream_hs_start(struct upstream_hs *h, const struct upstream *u, uint8_t cmd,
	const struct socks_addr *dst)
{
	memset(h, 0, offsetof(struct upstream_hs, out));
	h->u = u;
	h->cmd = cmd;
	h->dst = *dst;
	h->phase = UPSTREAM_PH_REPLY;
	if (!upstream_can(u, cmd) || u->proto == UPSTREAM_DIRECT)
		return hs_cannot(h, SOCKS_REP_COMMAND_NOT_SUPPORTED,
			"the parent cannot carry this command");
	switch (u->proto) {
	case UPSTREAM_SOCKS5:
		h->phase = UPSTREAM_PH_METHOD;
		queue_socks5_greeting(h);
		return 0;
	case UPSTREAM_SOCKS4:
		return queue_socks4_request(h);
	case UPSTREAM_HTTP:
		return queue_http_connect(h);
	case UPSTREAM_DIRECT:
		break;
	}
	return -1;
}

void
upstream_hs_sent(struct upstream_hs *h, size_t n)
{
	if (n > h->out_len)
		n = h->out_len;
	memmove(h->out, h->out + n, h->out_len - n);
	h->out_len -= n;
}

/* --- what the parent says -------------------------------------------------- */

static enum upstream_feed
hs_fail(struct upstream_hs *h, const char *why)
{
	h->phase = UPSTREAM_PH_DONE;
	h->res.rep = SOCKS_REP_GENERAL_FAILURE;
	h->res.parent_failed = true;
	h->res.why = why;
	return UPSTREAM_FEED_FAILED;
}

/* The parent answered: rep for the client, why for the log (NULL: success). */
static enum upstream_feed
hs_answer(struct upstream_hs *h, uint8_t rep, const char *why)
{
	h->res.rep = rep;
	h->res.why = why;
	if (rep == SOCKS_REP_SUCCEEDED && h->cmd == SOCKS_CMD_BIND &&
		h->phase == UPSTREAM_PH_REPLY) {
		h->phase = UPSTREAM_PH_SECOND;
		return UPSTREAM_FEED_STEP;
	}
	h->phase = UPSTREAM_PH_DONE;
	return UPSTREAM_FEED_DONE;
}

/* The request goes out next; the parent's reply is what we wait for. */
static enum upstream_feed
socks5_request_next(struct upstream_hs *h)
{
	queue_socks5_request(h);
	h->phase = UPSTREAM_PH_REPLY;
	return UPSTREAM_FEED_STEP;
}

static enum upstream_feed
parse_method(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	if (len < 2)
		return UPSTREAM_FEED_MORE;
	*msglen = 2;
	if (p[0] != SOCKS_VERSION)
		return hs_fail(h, "parent is not a SOCKS5 server");
	if (p[1] == SOCKS_METHOD_NO_ACCEPTABLE)
		return hs_fail(h,
			h->u->has_user ? "parent accepts none of our methods"
				       : "parent wants a password");
	if (p[1] == SOCKS_METHOD_PASSWORD && h->u->has_user) {
		queue_userpass(h);
		h->phase = UPSTREAM_PH_AUTH;
		return UPSTREAM_FEED_STEP;
	}
	if (p[1] != SOCKS_METHOD_NONE)
		return hs_fail(h, "parent chose a method we did not offer");
	return socks5_request_next(h);
}

/* RFC 1929 §2: VER STATUS. Some servers answer with VER 5: taken as well. */
static enum upstream_feed
parse_auth(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	if (len < 2)
		return UPSTREAM_FEED_MORE;
	*msglen = 2;
	if (p[0] != SOCKS_AUTH_VERSION && p[0] != SOCKS_VERSION)
		return hs_fail(h, "malformed password status from parent");
	if (p[1] != SOCKS_AUTH_STATUS_OK)
		return hs_fail(h, "parent refused our password");
	return socks5_request_next(h);
}

/* RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT. */
static enum upstream_feed
parse_socks5_reply(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	size_t used;
	enum proto_status st;

	if (len >= 1 && p[0] != SOCKS_VERSION)
		return hs_fail(h, "malformed reply from parent");
	if (len < 3)
		return UPSTREAM_FEED_MORE;
	st = proto_parse_addr(p + 3, len - 3, &h->res.bnd, &used);
	if (st == PROTO_NEED_MORE)
		return UPSTREAM_FEED_MORE;
	if (st != PROTO_OK)
		return hs_fail(h, "malformed reply from parent");
	*msglen = 3 + used;
	if (p[1] > SOCKS_REP_ATYP_NOT_SUPPORTED)
		return hs_answer(h, SOCKS_REP_GENERAL_FAILURE, "parent: unknown reply code");
	return hs_answer(h, p[1], p[1] ? proto_rep_str(p[1]) : NULL);
}

/* VN CD DSTPORT DSTIP; VN is 0 (some servers send 4: taken as well). */
static enum upstream_feed
parse_socks4_reply(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	struct socks_addr *b = &h->res.bnd;

	if (len >= 1 && p[0] != SOCKS4_REPLY_VERSION && p[0] != SOCKS4_VERSION)
		return hs_fail(h, "malformed reply from parent");
	if (len < PROTO_SOCKS4_REPLY_LEN)
		return UPSTREAM_FEED_MORE;
	*msglen = PROTO_SOCKS4_REPLY_LEN;
	switch (p[1]) {
	case SOCKS4_REP_GRANTED:
		memset(b, 0, sizeof(*b));
		b->atyp = SOCKS_ATYP_IPV4;
		b->port = (uint16_t)(p[2] << 8 | p[3]);
		memcpy(b->ip.ipv4, p + 4, 4);
		return hs_answer(h, SOCKS_REP_SUCCEEDED, NULL);
	case SOCKS4_REP_REJECTED:
		return hs_answer(h, SOCKS_REP_GENERAL_FAILURE,
			"parent: request rejected or failed");
	case 92:
	case 93:
		return hs_fail(h, "parent wants an identd answer");
	default:
		return hs_fail(h, "malformed reply from parent");
	}
}

/* An HTTP status as the client's REP: the parent could not reach the target
 * (5xx) or would not (403); 407 is the parent's own refusal (a failure of
 * the parent: the next one is tried). */
static uint8_t
http_rep(int status)
{
	if (status >= 200 && status <= 299)
		return SOCKS_REP_SUCCEEDED;
	switch (status) {
	case 401:
	case 403:
	case 405:
		return SOCKS_REP_NOT_ALLOWED;
	case 404:
		return SOCKS_REP_HOST_UNREACHABLE;
	case 408:
	case 504:
		return SOCKS_REP_TTL_EXPIRED;
	default:
		return status >= 500 && status <= 599 ? SOCKS_REP_HOST_UNREACHABLE
						      : SOCKS_REP_GENERAL_FAILURE;
	}
}

/* The end of the response head: CRLF CRLF (or LF LF), 0 when not yet. */
static size_t
http_head_len(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* HTTP/1.x SP 3DIGIT ... (RFC 9112 §4). */
static enum upstream_feed
parse_http_reply(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	static const char prefix[] = "HTTP/1.";
	size_t plen = sizeof(prefix) - 1, head;
	int status;

	if (memcmp(p, prefix, len < plen ? len : plen) != 0)
		return hs_fail(h, "parent is not an HTTP proxy");
	if ((head = http_head_len(p, len)) == 0)
		return UPSTREAM_FEED_MORE;
	*msglen = head;
	if (head < plen + 6 || p[plen] < '0' || p[plen] > '9' || p[plen + 1] != ' ' ||
		p[plen + 2] < '1' || p[plen + 2] > '5' || p[plen + 3] < '0' || p[plen + 3] > '9' ||
		p[plen + 4] < '0' || p[plen + 4] > '9')
		return hs_fail(h, "malformed status line from parent");
	status = (p[plen + 2] - '0') * 100 + (p[plen + 3] - '0') * 10 + (p[plen + 4] - '0');
	h->res.http_status = status;
	if (status == 407)
		return hs_fail(h,
			h->u->has_user ? "parent refused our password" : "parent wants a password");
	return hs_answer(h, http_rep(status),
		status < 300 && status >= 200 ? NULL : "parent: HTTP error");
}

static enum upstream_feed
parse_message(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *msglen)
{
	switch (h->phase) {
	case UPSTREAM_PH_METHOD:
		return parse_method(h, p, len, msglen);
	case UPSTREAM_PH_AUTH:
		return parse_auth(h, p, len, msglen);
	case UPSTREAM_PH_REPLY:
	case UPSTREAM_PH_SECOND:
		if (h->u->proto == UPSTREAM_SOCKS4)
			return parse_socks4_reply(h, p, len, msglen);
		if (h->u->proto == UPSTREAM_HTTP)
			return parse_http_reply(h, p, len, msglen);
		return parse_socks5_reply(h, p, len, msglen);
	case UPSTREAM_PH_DONE:
		break;
	}
	*msglen = 0;
	return UPSTREAM_FEED_FAILED;
}

enum upstream_feed
upstream_hs_feed(struct upstream_hs *h, const uint8_t *p, size_t len, size_t *taken)
{
	size_t had = h->in_len, n = sizeof(h->in) - had, msglen = 0;
	enum upstream_feed st;

	if (n > len)
		n = len;
	memcpy(h->in + had, p, n);
	st = parse_message(h, h->in, had + n, &msglen);
	if (st == UPSTREAM_FEED_MORE) {
		*taken = n;
		h->in_len = had + n;
		if (h->in_len == sizeof(h->in))
			return hs_fail(h, "reply from parent too long");
		return st;
	}
	/* A failure judged before the message's end takes what it saw. */
	*taken = msglen > had ? msglen - had : n;
	h->in_len = 0;
	return st;
}

void
upstream_hs_eof(struct upstream_hs *h)
{
	bool answered = h->phase == UPSTREAM_PH_SECOND;

	(void)hs_fail(h,
		answered ? "parent closed before the BIND peer came"
			 : "parent closed the connection");
	h->res.parent_failed = !answered;
}
