/*
 * conn: the per-client state machine. Input is parsed by proto (pure),
 * decisions are made with auth, and each state's step either waits for more
 * bytes, moves on, starts asynchronous work (lookup, connect) or closes.
 * Once a target is connected the relay module takes both fds; the handshake
 * state is freed then so an established session stays small.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "auth.h"
#include "bindcmd.h"
#include "buf.h"
#include "config.h"
#include "connlimit.h"
#include "log.h"
#include "loop.h"
#include "proto.h"
#include "proxyproto.h"
#include "relay.h"
#include "resolver.h"
#include "udpassoc.h"

/* Greeting, RFC 1929 request and request may arrive in one segment; the
 * buffer holds the largest single message with room to spare. */
#define HS_IN_CAP 1024
#define HS_OUT_CAP 64
/* After a failure reply: how long to wait for the client to read it and
 * close before closing anyway (a close with unread input would send RST
 * and could destroy the reply in flight). */
#define CONN_LINGER_MS 2000
/* A failed password is answered after this delay (a timer, never a
 * sleep): guessing costs the client time, not the server. */
#define CONN_AUTH_FAIL_DELAY_MS 500
/* Refusals (client rules, limits) are logged at most this often per
 * second, so a scan cannot flood the log. */
#define CONN_REFUSAL_LOGS_PER_SEC 5

enum conn_state {
	CONN_ST_PROXY,      /* waits for the PROXY protocol header; client READ; handshake timer */
	CONN_ST_GREETING,   /* waits for the method-selection message; client READ; handshake timer */
	CONN_ST_AUTH,       /* waits for the RFC 1929 request; client READ; handshake timer */
	CONN_ST_AUTH_DELAY, /* a failed password: waits out the delay; no watch; delay timer */
	CONN_ST_REQUEST,    /* waits for the request; client READ; handshake timer */
	CONN_ST_REQUEST4,   /* waits for a SOCKS4/4a request; client READ; handshake timer */
	CONN_ST_RESOLVING,  /* waits for the resolver callback; connect timer */
	CONN_ST_CONNECTING, /* waits for the outbound connect; target WRITE; attempt timer */
	CONN_ST_BIND_WAIT,  /* BIND: first reply sent, waits for the peer; client READ (EOF); bind timer */
	CONN_ST_UDP,        /* UDP ASSOCIATE running; client READ (EOF ends it); udpassoc's idle timer */
	CONN_ST_RELAY,      /* the relay owns both fds and its idle timer */
	CONN_ST_CLOSING,    /* reply queued: flush, shut down, drain client until EOF; linger timer */
	CONN_ST_DEAD,       /* closed, waiting for release (transient, never at rest) */
};

static const char *const conn_state_names[] = {
	"proxy", "greeting", "auth", "auth-delay", "request", "request4", "resolving", "connecting", "bind-wait",
	"udp", "relay",
	"closing", "dead",
};

enum step {
	STEP_NEED_MORE, /* wait for more client bytes */
	STEP_AGAIN,     /* the state changed: run the next step now */
	STEP_WAIT,      /* asynchronous work started */
	STEP_CLOSE,     /* close the connection now */
};

/* Handshake-only state: freed when the relay starts. */
struct conn_hs {
	struct buf in;
	uint8_t in_data[HS_IN_CAP];
	uint8_t out[HS_OUT_CAP];        /* replies not yet sent */
	size_t out_len;
	uint64_t connect_deadline_ms;   /* whole resolve+connect budget */
	struct proto_request req;
	struct resolver_query *query;   /* pending lookup, NULL otherwise */
	struct resolver_result res;     /* addresses to try */
	size_t next_addr;               /* index of the next address to try */
	int last_err;                   /* errno of the last failed attempt */
	bool denied;                    /* an address was refused by the rules */
	bool client_eof;                /* the client sent FIN before the relay began */
};

struct conn {
	struct conn_env *env;
	struct config *cfg;       /* the config this session started with (ref) */
	struct conn *prev, *next; /* env->head list */
	uint64_t id;
	enum conn_state state;
	int fd;                   /* client fd; -1 once handed to the relay */
	int target_fd;            /* outbound fd while connecting; -1 otherwise */
	struct watcher cw;        /* client watcher before the relay */
	struct watcher tw;        /* target watcher while connecting */
	struct timer timer;       /* the current state's timeout */
	struct release rel;
	union sockaddr_any peer;  /* client address */
	union sockaddr_any local; /* where the client reached us */
	uint64_t start_ms;
	struct conn_hs *hs;       /* NULL once relaying */
	struct relay relay;
	struct bindcmd *bind;     /* BIND listener while waiting for the peer */
	struct udpassoc *udp;     /* UDP ASSOCIATE while it runs */
	uint8_t version;          /* SOCKS_VERSION, or SOCKS4_VERSION */
	uint8_t method;           /* chosen method */
	uint8_t cmd;              /* 0 until a request was parsed */
	uint8_t rep;              /* reply sent, 0xFF when none */
	char *user;               /* authenticated user (for logs), or NULL */
	bool ip_counted;          /* counted in env->limits per IP */
	bool quiet;               /* refused at admission: logged (rate-limited) already */
	bool user_counted;        /* counted in env->limits per user */
	char *target;             /* "host:port" requested (for logs), or NULL */
	const char *end;          /* why the session ended */
};

const char *const conn_udp_drop_names[8] = {
	"fragment", "malformed", "foreign", "would_block", "queue_full", "unresolved",
	"send_error", "denied",
};

static void conn_close(struct conn *c, const char *why);
static void conn_advance(struct conn *c);
static void conn_on_client(struct loop *loop, unsigned events, void *arg);
static void conn_connect_next(struct conn *c);
static void conn_on_resolved(const struct resolver_result *res, void *arg);
static enum step conn_start_bind(struct conn *c);
static enum step conn_dispatch_request(struct conn *c);
static bool conn_admit(struct conn *c);
static bool conn_refusal_log_ok(const struct conn *c);
static enum step conn_start_udp(struct conn *c);
static void conn_relay_done(enum relay_end how, int err, void *arg);

static void
conn_set_state(struct conn *c, enum conn_state next)
{
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %" PRIu64 ": %s -> %s", c->id,
			conn_state_names[c->state], conn_state_names[next]);
	c->state = next;
	if (next == CONN_ST_CLOSING)
		timer_start(c->env->loop, &c->timer, CONN_LINGER_MS);
}

static bool
conn_watch(struct conn *c, struct watcher *w, unsigned mask)
{
	if (loop_watch(c->env->loop, w, mask) < 0) {
		log_warn("conn %" PRIu64 ": epoll_ctl", c->id);
		conn_close(c, "epoll");
		return false;
	}
	return true;
}

/* --- output -------------------------------------------------------------- */

/* Sends queued reply bytes; leaves the rest queued. Returns -1 on error. */
static int
conn_flush(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	while (hs->out_len > 0) {
		ssize_t n = send(c->fd, hs->out, hs->out_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		memmove(hs->out, hs->out + n, hs->out_len - (size_t)n);
		hs->out_len -= (size_t)n;
	}
	return 0;
}

static int
conn_queue(struct conn *c, const uint8_t *p, size_t len)
{
	struct conn_hs *hs = c->hs;

	/* Replies are tiny and few (method, auth status, one reply): they
	 * always fit; anything else is a bug, answered by closing. */
	if (len > sizeof(hs->out) - hs->out_len)
		return -1;
	memcpy(hs->out + hs->out_len, p, len);
	hs->out_len += len;
	return conn_flush(c);
}

/* Encodes a 2-byte method or auth-status reply and queues it. */
static int
conn_queue2(struct conn *c, size_t (*encode)(uint8_t out[2], uint8_t v), uint8_t v)
{
	uint8_t msg[2];
	size_t n = encode(msg, v);

	return conn_queue(c, msg, n);
}

static unsigned
conn_client_mask(const struct conn *c)
{
	unsigned mask = c->hs->out_len ? LOOP_WRITE : 0;

	switch (c->state) {
	case CONN_ST_PROXY:
	case CONN_ST_GREETING:
	case CONN_ST_AUTH:
	case CONN_ST_REQUEST:
	case CONN_ST_REQUEST4:
	case CONN_ST_CLOSING:
	case CONN_ST_BIND_WAIT:
	case CONN_ST_UDP:
		mask |= LOOP_READ;
		break;
	case CONN_ST_RESOLVING:
	case CONN_ST_CONNECTING:
		/* Bytes the client sends early are kept for the relay (while
		 * they fit); staying registered lets the relay take the fd
		 * over with one EPOLL_CTL_MOD. A FIN is seen again by the
		 * relay (EOF is sticky), so it only stops the reading here. */
		if (!c->hs->client_eof && buf_space(&c->hs->in) > 0)
			mask |= LOOP_READ;
		break;
	default:
		break;
	}
	return mask;
}

/* Queues a reply in the client's protocol version: a SOCKS5 REP, or for
 * SOCKS4 90 (granted) / 91 (anything else). */
static int
conn_reply(struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
	uint8_t msg[PROTO_REPLY_MAX];
	size_t n;

	if (c->version == SOCKS4_VERSION)
		n = proto_encode_socks4_reply(msg, rep == SOCKS_REP_SUCCEEDED ?
			SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED, bnd);
	else
		n = proto_encode_reply(msg, rep, bnd);
	return conn_queue(c, msg, n);
}

/* Reply-then-close: queue the reply, then flush, shut down and linger. */
static enum step
conn_fail(struct conn *c, uint8_t rep, const char *why)
{
	c->rep = rep;
	c->end = why;
	if (conn_reply(c, rep, NULL) < 0)
		return STEP_CLOSE;
	conn_set_state(c, CONN_ST_CLOSING);
	return STEP_AGAIN;
}

/* conn_fail from an asynchronous completion (lookup, connect, timer):
 * outside conn_advance, so it drives the closing itself. */
static void
conn_fail_async(struct conn *c, uint8_t rep, const char *why)
{
	if (conn_fail(c, rep, why) == STEP_CLOSE)
		conn_close(c, c->end);
	else
		conn_advance(c);
}

/* --- state steps --------------------------------------------------------- */

/* HAProxy PROXY protocol: the header carries the real client address,
 * which replaces the balancer's as the client for rules, limits, logs and
 * the UDP source check. The local address stays ours (it is where UDP and
 * BIND sockets are opened). */
static enum step
conn_step_proxy(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proxyproto_result pr;
	size_t used;
	enum proxyproto_status st = proxyproto_parse(buf_peek(&hs->in), buf_len(&hs->in),
		&pr, &used);

	if (st == PROXYPROTO_NEED_MORE) {
		if (buf_len(&hs->in) == hs->in.cap) {
			c->env->stats.proxy_rejects++;
			c->end = "PROXY header too large";
			return STEP_CLOSE;
		}
		return STEP_NEED_MORE;
	}
	if (st != PROXYPROTO_OK) {
		c->env->stats.proxy_rejects++;
		c->end = proxyproto_status_str(st);
		return STEP_CLOSE;
	}
	buf_consume(&hs->in, used);
	if (!pr.local) {
		if (log_enabled(LOG_LVL_DEBUG)) {
			char a[ADDR_STRLEN], b[ADDR_STRLEN];
			log_debug("conn %" PRIu64 ": PROXY v%d: client %s (via %s)", c->id,
				pr.version, addr_format(&pr.src, a, sizeof(a)),
				addr_format(&c->peer, b, sizeof(b)));
		}
		c->peer = pr.src;
		addr_unmap(&c->peer);
	}
	if (!conn_admit(c))
		return STEP_WAIT; /* closed */
	conn_set_state(c, CONN_ST_GREETING);
	return STEP_AGAIN;
}

static enum step
conn_step_greeting(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proto_greeting g;
	size_t used;
	enum proto_status st;

	if (buf_len(&hs->in) == 0)
		return STEP_NEED_MORE;
	if (buf_peek(&hs->in)[0] == SOCKS4_VERSION && c->cfg->socks4) {
		c->version = SOCKS4_VERSION;
		conn_set_state(c, CONN_ST_REQUEST4);
		return STEP_AGAIN;
	}
	st = proto_parse_greeting(buf_peek(&hs->in), buf_len(&hs->in), &g, &used);
	if (st == PROTO_NEED_MORE)
		return STEP_NEED_MORE;
	if (st != PROTO_OK) {
		/* RFC 1928 gives no reply for a wrong version: close silently. */
		c->end = proto_status_str(st);
		return STEP_CLOSE;
	}
	buf_consume(&hs->in, used);
	c->method = proto_choose_method(&g, c->cfg->methods, c->cfg->nmethods);
	if (conn_queue2(c, proto_encode_method, c->method) < 0)
		return STEP_CLOSE;
	if (c->method == SOCKS_METHOD_NO_ACCEPTABLE) {
		c->end = "no acceptable method";
		conn_set_state(c, CONN_ST_CLOSING);
		return STEP_AGAIN;
	}
	conn_set_state(c, c->method == SOCKS_METHOD_PASSWORD ? CONN_ST_AUTH
							     : CONN_ST_REQUEST);
	return STEP_AGAIN;
}

/* Password hashes (yescrypt, SHA-crypt) cost milliseconds each, on the one
 * thread that serves everyone: wrong passwords from many addresses must not
 * stall the other sessions. At most a fifth of the loop's time goes
 * to crypt(3); past that, checks that need a hash fail at once (a verified
 * password is cached and never needs one). */
#define CONN_HASH_US_PER_SEC 200000
static bool
conn_auth_check(struct conn *c, const char *user, const char *pass)
{
	struct conn_env *env = c->env;
	uint64_t now = loop_now(env->loop);
	enum auth_result r;
	struct timespec t0, t1;
	bool hashed;

	env->hash_budget_us += (int64_t)(now - env->hash_budget_at_ms) *
			       (CONN_HASH_US_PER_SEC / 1000);
	if (env->hash_budget_us > CONN_HASH_US_PER_SEC)
		env->hash_budget_us = CONN_HASH_US_PER_SEC;
	env->hash_budget_at_ms = now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = auth_check_ex(c->cfg->users, user, pass, env->hash_budget_us > 0, &hashed);
	if (hashed) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		env->hash_budget_us -= (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
				       (t1.tv_nsec - t0.tv_nsec) / 1000;
	}
	if (r == AUTH_RESULT_NEED_HASH && conn_refusal_log_ok(c))
		log_warnx("conn %" PRIu64 ": password hashing budget spent (many failed "
			  "logins?): user \"%s\" refused unchecked", c->id, user);
	return r == AUTH_RESULT_OK;
}

static enum step
conn_step_auth(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proto_userpass up;
	size_t used;
	bool ok;
	enum proto_status st = proto_parse_userpass(buf_peek(&hs->in),
		buf_len(&hs->in), &up, &used);

	if (st == PROTO_NEED_MORE)
		return STEP_NEED_MORE;
	if (st != PROTO_OK) {
		/* RFC 1929 §2: any non-zero status means failure, then close. */
		c->end = proto_status_str(st);
		if (conn_queue2(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_FAILURE) < 0)
			return STEP_CLOSE;
		conn_set_state(c, CONN_ST_CLOSING);
		return STEP_AGAIN;
	}
	buf_consume(&hs->in, used);
	{
		uint64_t now = loop_now(c->env->loop), left = 0;
		bool locked = c->env->limits &&
			connlimit_auth_locked(c->env->limits, &c->peer, now, &left);
		char peer[ADDR_STRLEN];

		/* A NUL inside a field would make the C-string check see a
		 * different name than the client sent: never authenticates.
		 * A locked-out address is not checked at all. */
		ok = !locked && strlen(up.user) == up.ulen && strlen(up.pass) == up.plen &&
		     conn_auth_check(c, up.user, up.pass);
		explicit_bzero(&up.pass, sizeof(up.pass));
		addr_format(&c->peer, peer, sizeof(peer));
		if (!ok) {
			c->env->stats.auth_failures++;
			if (locked) {
				log_warnx("conn %" PRIu64 ": %s is locked out for %" PRIu64
					  " s more; user \"%s\" not checked", c->id, peer,
					(left + 999) / 1000, up.user);
				c->end = "locked out";
			} else {
				log_warnx("conn %" PRIu64 ": authentication failed for user \"%s\" "
					  "from %s", c->id, up.user, peer);
				c->end = "auth failed";
				if (c->env->limits &&
				    connlimit_auth_fail(c->env->limits, &c->peer, now) ==
					    CONNLIMIT_LOCKOUT_STARTED)
					log_warnx("%s locked out for %u s after %u failed "
						  "authentications", peer, c->cfg->auth_lockout,
						c->cfg->auth_fail_limit);
			}
			/* Answered after a fixed delay (see conn_on_timer). */
			timer_stop(c->env->loop, &c->timer);
			conn_set_state(c, CONN_ST_AUTH_DELAY);
			timer_start(c->env->loop, &c->timer, CONN_AUTH_FAIL_DELAY_MS);
			return STEP_WAIT;
		}
		if (c->env->limits)
			connlimit_auth_ok(c->env->limits, &c->peer, now);
	}
	c->user = strdup(up.user);
	if (!c->user || conn_queue2(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_OK) < 0)
		return STEP_CLOSE;
	conn_set_state(c, CONN_ST_REQUEST);
	return STEP_AGAIN;
}

static enum step
conn_step_request(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	size_t used;
	enum proto_status st = proto_parse_request(buf_peek(&hs->in),
		buf_len(&hs->in), &hs->req, &used);

	if (st == PROTO_NEED_MORE)
		return STEP_NEED_MORE;
	if (st == PROTO_ERR_VERSION) {
		c->end = proto_status_str(st);
		return STEP_CLOSE;
	}
	if (st != PROTO_OK)
		return conn_fail(c, proto_rep_for_status(st), proto_status_str(st));
	buf_consume(&hs->in, used);
	return conn_dispatch_request(c);
}

static enum step
conn_step_request4(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proto_socks4_request r4;
	size_t used;
	enum proto_status st = proto_parse_socks4_request(buf_peek(&hs->in),
		buf_len(&hs->in), &r4, &used);

	if (st == PROTO_NEED_MORE)
		return STEP_NEED_MORE;
	if (st != PROTO_OK)
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, proto_status_str(st));
	buf_consume(&hs->in, used);
	/* The USERID is not authenticated: logged only at debug. */
	if (log_enabled(LOG_LVL_DEBUG) && r4.userid[0])
		log_debug("conn %" PRIu64 ": SOCKS4 userid \"%s\" (not authenticated)",
			c->id, r4.userid);
	hs->req.cmd = r4.cmd;
	hs->req.dst = r4.dst;
	return conn_dispatch_request(c);
}

/* --- access rules and limits --------------------------------------------- */

/* Refusals are logged at most CONN_REFUSAL_LOGS_PER_SEC times a second. */
static bool
conn_refusal_log_ok(const struct conn *c)
{
	static struct log_ratelimit rl;

	return log_ratelimit_ok(&rl, loop_now(c->env->loop), 1000, CONN_REFUSAL_LOGS_PER_SEC);
}

static unsigned
conn_acl_cmd(uint8_t cmd)
{
	return cmd == SOCKS_CMD_BIND ? ACL_CMD_BIND
	     : cmd == SOCKS_CMD_UDP_ASSOCIATE ? ACL_CMD_UDP : ACL_CMD_CONNECT;
}

/* The daemon itself as a destination: its loopback, or one of its
 * listening addresses (a wildcard listener counts at the address the
 * client reached us on) — a proxy loop. */
static bool
conn_is_self(const struct conn *c, const union sockaddr_any *dst)
{
	union sockaddr_any d = *dst;

	addr_unmap(&d);
	/* connect() to 0.0.0.0 or :: reaches this host (Linux routes it to
	 * loopback): as much "self" as 127.0.0.1. */
	if (addr_is_loopback(&d) || addr_is_unspecified(&d))
		return true;
	for (size_t i = 0; i < c->cfg->nlisten; i++) {
		const union sockaddr_any *l = &c->cfg->listen[i].addr;
		if (addr_equal(l, &d))
			return true;
		if (addr_port(l) == addr_port(&d) && addr_is_unspecified(l) &&
		    addr_ip_equal(&c->local, &d))
			return true;
	}
	return false;
}

/* Request rules for one destination (dst NULL: not known yet). Returns
 * ACL_ALLOW, ACL_DENY (*line: the deciding rule, 0 for the built-in
 * protection or "no rule matched") or ACL_UNDECIDED. */
static enum acl_verdict
conn_check_request(const struct conn *c, uint8_t cmd, const char *name,
	const union sockaddr_any *dst, uint16_t port, int *line)
{
	struct acl_request rq = {
		.client = &c->peer,
		.user = c->user,
		.cmd = conn_acl_cmd(cmd),
		.dst_name = name,
		.dst_addr = dst,
		.port = port,
	};
	struct acl_result r = acl_check_request(c->cfg->acl, &rq);

	*line = r.line;
	if (r.verdict != ACL_ALLOW)
		return r.verdict;
	/* With rules written, what none of them allows is denied. */
	if (r.line == 0 && acl_request_rule_count(c->cfg->acl) > 0)
		return ACL_DENY;
	if (dst && !(r.line && r.explicit_to) && !addr_is_loopback(&c->peer) &&
	    conn_is_self(c, dst)) {
		*line = 0;
		return ACL_DENY;
	}
	return ACL_ALLOW;
}

static void
conn_log_denied(const struct conn *c, const char *what, int line)
{
	char peer[ADDR_STRLEN];

	c->env->stats.rule_denials++;
	if (!conn_refusal_log_ok(c))
		return;
	addr_format(&c->peer, peer, sizeof(peer));
	if (line)
		log_info("conn %" PRIu64 ": %s from %s denied by %s:%d", c->id, what, peer,
			c->cfg->name, line);
	else if (acl_request_rule_count(c->cfg->acl) > 0)
		log_info("conn %" PRIu64 ": %s from %s denied: no rule allows it", c->id, what,
			peer);
	else
		log_info("conn %" PRIu64 ": %s from %s denied: the proxy's own loopback or "
			 "listening address (allow it with an explicit 'rule allow to ...')",
			c->id, what, peer);
}

/* A UDP datagram's destination (udpassoc's allow hook). */
static bool
conn_udp_allow(const union sockaddr_any *dst, const char *name, void *arg)
{
	const struct conn *c = arg;
	int line;

	return conn_check_request(c, SOCKS_CMD_UDP_ASSOCIATE, name, dst, addr_port(dst),
		       &line) == ACL_ALLOW;
}

/* Client rules and per-address limits: at accept, or after the PROXY
 * header names the real client. Returns false with the connection closed. */
static bool
conn_admit(struct conn *c)
{
	char peer[ADDR_STRLEN];

	if (acl_client_rule_count(c->cfg->acl) > 0) {
		struct acl_result r = acl_check_client(c->cfg->acl, &c->peer);
		/* With client rules written, a client none matches is denied. */
		if (r.verdict != ACL_ALLOW || r.line == 0) {
			c->env->stats.client_denials++;
			if (conn_refusal_log_ok(c)) {
				addr_format(&c->peer, peer, sizeof(peer));
				if (r.line)
					log_info("client %s denied by %s:%d", peer, c->cfg->name, r.line);
				else
					log_info("client %s denied: no client rule allows it", peer);
			}
			c->quiet = true;
			conn_close(c, "client denied");
			return false;
		}
	}
	if (c->cfg->max_connections_per_ip && c->env->limits) {
		enum connlimit_status st = connlimit_ip_acquire(c->env->limits, &c->peer,
			c->cfg->max_connections_per_ip);
		if (st != CONNLIMIT_OK) {
			c->env->stats.limit_refusals++;
			if (conn_refusal_log_ok(c))
				log_info("client %s refused: max-connections-per-ip %u reached",
					addr_format(&c->peer, peer, sizeof(peer)),
					c->cfg->max_connections_per_ip);
			c->quiet = true;
			conn_close(c, "max-connections-per-ip");
			return false;
		}
		c->ip_counted = true;
	}
	return true;
}

/* The request's DST as a socket address (unmapped), when it is an IP. */
static bool
conn_request_addr(const struct conn *c, union sockaddr_any *out)
{
	socklen_t len;

	if (proto_addr_to_sockaddr(&c->hs->req.dst, &out->ss, &len) < 0)
		return false;
	addr_unmap(out);
	return true;
}

/* A parsed request (SOCKS5 or SOCKS4): start what it asks for. */
static enum step
conn_dispatch_request(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	char target[300];

	c->cmd = hs->req.cmd;
	c->env->stats.active_by_cmd[c->cmd]++;
	/* The target string only feeds log lines: not built when they are
	 * not written (it is most of a session's user-space work). */
	if (log_enabled(LOG_LVL_INFO)) {
		proto_addr_format(&hs->req.dst, target, sizeof(target));
		c->target = strdup(target);
		if (!c->target)
			return STEP_CLOSE;
	}
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %" PRIu64 ": request %s %s", c->id,
			proto_cmd_str(c->cmd), c->target);

	{
		/* Decided now when it can be; a rule on the destination
		 * address waits for the address (after resolution). UDP
		 * ASSOCIATE's DST is the client's own endpoint: its
		 * destinations are checked per datagram. */
		union sockaddr_any dst, *dstp = NULL;
		int line;

		if (c->cmd != SOCKS_CMD_UDP_ASSOCIATE && !proto_addr_is_unspecified(&hs->req.dst) &&
		    conn_request_addr(c, &dst))
			dstp = &dst;
		if (conn_check_request(c, c->cmd,
			    hs->req.dst.atyp == SOCKS_ATYP_DOMAIN ? hs->req.dst.name : NULL,
			    dstp, hs->req.dst.port, &line) == ACL_DENY) {
			conn_log_denied(c, c->target ? c->target : "-", line);
			return conn_fail(c, SOCKS_REP_NOT_ALLOWED, "denied by rule");
		}
	}
	if (c->user && c->cfg->max_sessions_per_user && c->env->limits) {
		if (connlimit_user_acquire(c->env->limits, c->user, c->cfg->max_sessions_per_user) !=
		    CONNLIMIT_OK) {
			c->env->stats.limit_refusals++;
			if (conn_refusal_log_ok(c))
				log_info("conn %" PRIu64 ": user \"%s\" refused: "
					 "max-sessions-per-user %u reached", c->id, c->user,
					c->cfg->max_sessions_per_user);
			return conn_fail(c, SOCKS_REP_NOT_ALLOWED, "max-sessions-per-user");
		}
		c->user_counted = true;
	}

	if (hs->req.cmd == SOCKS_CMD_BIND)
		return conn_start_bind(c);
	if (hs->req.cmd == SOCKS_CMD_UDP_ASSOCIATE)
		return conn_start_udp(c);

	/* The connect timeout covers the name lookup and every attempt. */
	timer_stop(c->env->loop, &c->timer);
	hs->connect_deadline_ms = loop_now(c->env->loop) +
		(uint64_t)c->cfg->timeout_connect * 1000u;
	if (hs->req.dst.atyp == SOCKS_ATYP_DOMAIN) {
		conn_set_state(c, CONN_ST_RESOLVING);
		timer_start(c->env->loop, &c->timer, (uint64_t)c->cfg->timeout_connect * 1000u);
		hs->query = resolver_start(c->env->resolver, hs->req.dst.name,
			conn_on_resolved, c);
		if (!hs->query)
			return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no memory for lookup");
		return STEP_WAIT;
	}
	hs->res.status = RESOLVER_OK;
	if (!conn_request_addr(c, &hs->res.addrs[0]))
		return conn_fail(c, SOCKS_REP_ATYP_NOT_SUPPORTED, "bad address");
	hs->res.naddrs = 1;
	conn_set_state(c, CONN_ST_CONNECTING);
	conn_connect_next(c);
	return STEP_WAIT;
}

/* --- lookups and connects ----------------------------------------------- */

static void
conn_on_resolved(const struct resolver_result *res, void *arg)
{
	struct conn *c = arg;
	struct conn_hs *hs = c->hs;

	hs->query = NULL;
	if (c->state != CONN_ST_RESOLVING)
		return;
	timer_stop(c->env->loop, &c->timer);
	if (res->status != RESOLVER_OK || res->naddrs == 0) {
		log_debug("conn %" PRIu64 ": lookup of %s failed: %s", c->id,
			hs->req.dst.name, resolver_status_str(res->status));
		conn_fail_async(c, SOCKS_REP_HOST_UNREACHABLE, resolver_status_str(res->status));
		return;
	}
	hs->res = *res;
	hs->next_addr = 0;
	conn_set_state(c, CONN_ST_CONNECTING);
	conn_connect_next(c);
}

/* Outbound source address (external), per user when configured. */
static const union sockaddr_any *
conn_external_for(const struct conn *c, int family)
{
	return config_external_for(c->cfg, c->user, family);
}

static void
conn_target_close(struct conn *c)
{
	if (c->target_fd < 0)
		return;
	loop_unwatch_closing(c->env->loop, &c->tw);
	close(c->target_fd);
	c->target_fd = -1;
}

static void conn_on_target(struct loop *loop, unsigned events, void *arg);

/* Tries the remaining addresses in turn; each attempt gets an equal share of
 * what is left of the connect budget, so one black-holed address cannot use
 * it all when another would answer. */
static void
conn_connect_next(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct loop *loop = c->env->loop;

	conn_target_close(c);
	while (hs->next_addr < hs->res.naddrs) {
		union sockaddr_any to = hs->res.addrs[hs->next_addr++];
		uint64_t now = loop_now(loop), left, share;
		int fd;

		if (now >= hs->connect_deadline_ms)
			break;
		addr_set_port(&to, hs->req.dst.port);
		{
			int line;
			char a[ADDR_STRLEN], what[400];
			if (conn_check_request(c, c->cmd,
				    hs->req.dst.atyp == SOCKS_ATYP_DOMAIN ? hs->req.dst.name : NULL,
				    &to, hs->req.dst.port, &line) != ACL_ALLOW) {
				/* Checked on the address really connected to: a
				 * name resolving into a denied network is refused. */
				snprintf(what, sizeof(what), "%s (%s)", c->target ? c->target : "-",
					addr_format(&to, a, sizeof(a)));
				conn_log_denied(c, what, line);
				hs->denied = true;
				continue;
			}
		}
		fd = net_connect_start(&to, conn_external_for(c, to.sa.sa_family));
		if (fd < 0) {
			hs->last_err = errno;
			continue;
		}
		c->target_fd = fd;
		watcher_init(&c->tw, fd, conn_on_target, c);
		if (!conn_watch(c, &c->tw, LOOP_WRITE))
			return;
		left = hs->connect_deadline_ms - now;
		share = left / (hs->res.naddrs - hs->next_addr + 1);
		timer_start(loop, &c->timer, share < 250 && left > 250 ? 250 : share);
		return;
	}
	if (hs->denied && hs->last_err == 0) {
		conn_fail_async(c, SOCKS_REP_NOT_ALLOWED, "denied by rule");
		return;
	}
	if (hs->last_err == 0)
		hs->last_err = ETIMEDOUT;
	conn_fail_async(c, proto_rep_from_errno(hs->last_err), strerror(hs->last_err));
}

static void
conn_relay_done(enum relay_end how, int err, void *arg)
{
	struct conn *c = arg;
	static const char *const ends[] = { "done", "idle timeout", "error", "no memory" };

	c->fd = -1; /* the relay closed both fds */
	conn_close(c, how == RELAY_END_ERROR && err ? strerror(err) : ends[how]);
}

static void
conn_connected(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	union sockaddr_any bnd;
	int tfd = c->target_fd;

	timer_stop(c->env->loop, &c->timer);
	(void)net_set_nodelay(tfd);
	if (net_local_addr(tfd, &bnd) < 0) {
		hs->last_err = errno;
		conn_connect_next(c);
		return;
	}
	/* RFC 1928 §6: BND.ADDR/BND.PORT is the address the server assigned to
	 * connect to the target. */
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &bnd.sa) < 0) {
		conn_close(c, "client gone");
		return;
	}
	if (relay_start(&c->relay, c->env->loop, &c->cw, &c->tw,
		    buf_peek(&hs->in), buf_len(&hs->in), hs->out, hs->out_len,
		    c->cfg->timeout_idle * 1000u, conn_relay_done, c) < 0) {
		conn_close(c, "no memory for relay");
		return;
	}
	c->fd = -1;
	c->target_fd = -1;
	conn_set_state(c, CONN_ST_RELAY);
	free(c->hs);
	c->hs = NULL;
}

static void
conn_on_target(struct loop *loop, unsigned events, void *arg)
{
	struct conn *c = arg;
	int err;

	(void)loop;
	if (c->state != CONN_ST_CONNECTING)
		return;
	/* SO_ERROR has something to say only with EPOLLERR or EPOLLHUP: plain
	 * EPOLLOUT is reported once the connection is up (tcp_poll), so a
	 * getsockopt per session is saved. */
	err = (events & LOOP_ERROR) ? net_connect_result(c->target_fd) : 0;
	if (err == 0 && c->hs->next_addr > 1) {
		union sockaddr_any peer;
		/* A stale readiness event of an earlier attempt (same watcher,
		 * same batch) can reach a retry's fd: only a socket with a peer
		 * is really connected. The first attempt cannot see one. */
		if (net_peer_addr(c->target_fd, &peer) < 0) {
			if (errno == ENOTCONN)
				return;
			err = errno;
		}
	}
	if (err) {
		c->hs->last_err = err;
		conn_connect_next(c);
		return;
	}
	conn_connected(c);
}

/* --- BIND (RFC 1928 §4, §6: two replies) ------------------------------- */

static void
conn_on_bind_peer(int peer_fd, int err, const union sockaddr_any *peer, void *arg)
{
	struct conn *c = arg;
	struct conn_hs *hs = c->hs;

	if (c->state != CONN_ST_BIND_WAIT) {
		if (peer_fd >= 0)
			close(peer_fd);
		return;
	}
	timer_stop(c->env->loop, &c->timer);
	bindcmd_stop(c->bind);
	c->bind = NULL;
	if (peer_fd < 0) {
		errno = err;
		log_warn("conn %" PRIu64 ": bind: accept", c->id);
		conn_fail_async(c, SOCKS_REP_GENERAL_FAILURE, strerror(err));
		return;
	}
	if (log_enabled(LOG_LVL_DEBUG)) {
		char a[ADDR_STRLEN];
		log_debug("conn %" PRIu64 ": bind: peer %s connected", c->id,
			addr_format(peer, a, sizeof(a)));
	}
	{
		int line;
		if (conn_check_request(c, SOCKS_CMD_BIND, NULL, peer, addr_port(peer), &line) !=
		    ACL_ALLOW) {
			char a[ADDR_STRLEN], what[80];
			snprintf(what, sizeof(what), "bind peer %s",
				addr_format(peer, a, sizeof(a)));
			conn_log_denied(c, what, line);
			close(peer_fd);
			conn_fail_async(c, SOCKS_REP_NOT_ALLOWED, "bind peer denied");
			return;
		}
	}
	(void)net_set_nodelay(peer_fd);
	/* Second reply: BND.ADDR/BND.PORT name the connecting host. */
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &peer->sa) < 0) {
		close(peer_fd);
		conn_close(c, "client gone");
		return;
	}
	watcher_init(&c->tw, peer_fd, conn_on_target, c);
	if (relay_start(&c->relay, c->env->loop, &c->cw, &c->tw,
		    buf_peek(&hs->in), buf_len(&hs->in), hs->out, hs->out_len,
		    c->cfg->timeout_idle * 1000u, conn_relay_done, c) < 0) {
		close(peer_fd);
		conn_close(c, "no memory for relay");
		return;
	}
	c->fd = -1;
	conn_set_state(c, CONN_ST_RELAY);
	free(c->hs);
	c->hs = NULL;
}

/* Behind NAT the address to announce in BIND and UDP replies is not the
 * local one: `announce` replaces the IP, the port stays. */
static void
conn_announce(const struct conn *c, union sockaddr_any *a)
{
	uint16_t port = addr_port(a);

	if (a->sa.sa_family == AF_INET && c->cfg->has_announce4)
		*a = c->cfg->announce4;
	else if (a->sa.sa_family == AF_INET6 && c->cfg->has_announce6)
		*a = c->cfg->announce6;
	else
		return;
	addr_set_port(a, port);
}

static enum step
conn_start_bind(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	union sockaddr_any expect, listen_on = c->local, bound;
	const union sockaddr_any *ext;
	int family = c->local.sa.sa_family;
	bool check_peer = false;

	/* The listener's family follows DST.ADDR when we have an address of
	 * that family to offer, else the control connection's. */
	if (conn_request_addr(c, &expect)) {
		check_peer = !proto_addr_is_unspecified(&hs->req.dst);
		if (conn_external_for(c, expect.sa.sa_family))
			family = expect.sa.sa_family;
	}
	if ((ext = conn_external_for(c, family)))
		listen_on = *ext;
	c->bind = bindcmd_start(c->env->loop, &listen_on, c->cfg->bind_port_lo,
		c->cfg->bind_port_hi, check_peer ? &expect : NULL, &bound,
		conn_on_bind_peer, c);
	if (!c->bind) {
		log_warn("conn %" PRIu64 ": bind: listen", c->id);
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "bind listen failed");
	}
	/* First reply: where the application server should connect. */
	if (c->version == SOCKS4_VERSION && bound.sa.sa_family != AF_INET) {
		/* A SOCKS4 reply can only name an IPv4 address. */
		bindcmd_stop(c->bind);
		c->bind = NULL;
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no IPv4 address for SOCKS4 BIND");
	}
	conn_announce(c, &bound);
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &bound.sa) < 0)
		return STEP_CLOSE;
	timer_stop(c->env->loop, &c->timer);
	conn_set_state(c, CONN_ST_BIND_WAIT);
	timer_start(c->env->loop, &c->timer, (uint64_t)c->cfg->timeout_bind * 1000u);
	return STEP_WAIT;
}

/* --- UDP ASSOCIATE (RFC 1928 §7) ------------------------------------------ */

static void
conn_on_udp_end(const char *why, void *arg)
{
	conn_close(arg, why);
}

static enum step
conn_start_udp(struct conn *c)
{
	struct udpassoc_options opt;
	union sockaddr_any bnd;

	memset(&opt, 0, sizeof(opt));
	opt.port_lo = c->cfg->udp_port_lo;
	opt.port_hi = c->cfg->udp_port_hi;
	opt.external4 = conn_external_for(c, AF_INET);
	opt.external6 = conn_external_for(c, AF_INET6);
	opt.idle_ms = c->cfg->timeout_udp * 1000u;
	opt.allow = conn_udp_allow;
	opt.allow_arg = c;
	c->udp = udpassoc_start(c->env->loop, c->env->resolver, &opt, &c->peer,
		&c->local, &c->hs->req.dst, &bnd, conn_on_udp_end, c);
	if (!c->udp) {
		log_warn("conn %" PRIu64 ": udp associate", c->id);
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "udp socket failed");
	}
	conn_announce(c, &bnd);
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &bnd.sa) < 0)
		return STEP_CLOSE;
	timer_stop(c->env->loop, &c->timer);
	conn_set_state(c, CONN_ST_UDP);
	return STEP_WAIT;
}

/* --- client input and the step loop -------------------------------------- */

static void
conn_advance(struct conn *c)
{
	enum step st = STEP_NEED_MORE;

	for (;;) {
		switch (c->state) {
		case CONN_ST_PROXY:
			st = conn_step_proxy(c);
			break;
		case CONN_ST_GREETING:
			st = conn_step_greeting(c);
			break;
		case CONN_ST_AUTH:
			st = conn_step_auth(c);
			break;
		case CONN_ST_REQUEST:
			st = conn_step_request(c);
			break;
		case CONN_ST_REQUEST4:
			st = conn_step_request4(c);
			break;
		case CONN_ST_CLOSING:
			/* Everything queued is sent: stop writing, wait for EOF. */
			if (c->hs->out_len == 0 && shutdown(c->fd, SHUT_WR) < 0) {
				st = STEP_CLOSE;
				break;
			}
			st = STEP_WAIT;
			break;
		default:
			st = STEP_WAIT;
			break;
		}
		if (st != STEP_AGAIN)
			break;
	}
	if (st == STEP_CLOSE) {
		conn_close(c, c->end ? c->end : "protocol error");
		return;
	}
	if (c->state == CONN_ST_RELAY || c->state == CONN_ST_DEAD)
		return;
	(void)conn_watch(c, &c->cw, conn_client_mask(c));
}

static void
conn_on_client(struct loop *loop, unsigned events, void *arg)
{
	struct conn *c = arg;
	struct conn_hs *hs = c->hs;

	(void)loop;
	if (c->state == CONN_ST_DEAD || !hs)
		return;
	if ((events & LOOP_WRITE) && conn_flush(c) < 0) {
		conn_close(c, "client gone");
		return;
	}
	if (events & LOOP_READ) {
		ssize_t n;
		if (c->state == CONN_ST_CLOSING || c->state == CONN_ST_UDP) {
			/* Discard whatever arrives until the client's EOF. */
			uint8_t sink[512];
			n = read(c->fd, sink, sizeof(sink));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				conn_close(c, c->state == CONN_ST_UDP ? "client closed"
								       : c->end);
				return;
			}
		} else if (c->state == CONN_ST_RESOLVING || c->state == CONN_ST_CONNECTING) {
			n = buf_space(&hs->in) ? buf_fill(&hs->in, c->fd) : -1;
			if (n == 0)
				hs->client_eof = true;
			else if (n < 0 && errno != EAGAIN && buf_space(&hs->in)) {
				conn_close(c, strerror(errno));
				return;
			}
		} else {
			n = buf_fill(&hs->in, c->fd);
			if (n == 0) {
				conn_close(c, c->state == CONN_ST_BIND_WAIT ? "client closed"
									   : "client closed during handshake");
				return;
			}
			if (n < 0 && errno != EAGAIN) {
				conn_close(c, errno == ENOBUFS ? "handshake too large" : strerror(errno));
				return;
			}
		}
	}
	conn_advance(c);
}

static void
conn_on_timer(struct loop *loop, void *arg)
{
	struct conn *c = arg;

	(void)loop;
	switch (c->state) {
	case CONN_ST_PROXY:
	case CONN_ST_GREETING:
	case CONN_ST_AUTH:
	case CONN_ST_REQUEST:
	case CONN_ST_REQUEST4:
		conn_close(c, "handshake timeout");
		break;
	case CONN_ST_RESOLVING:
		resolver_cancel(c->hs->query);
		c->hs->query = NULL;
		conn_fail_async(c, SOCKS_REP_HOST_UNREACHABLE, "lookup timeout");
		break;
	case CONN_ST_CONNECTING:
		c->hs->last_err = ETIMEDOUT;
		conn_connect_next(c);
		break;
	case CONN_ST_AUTH_DELAY: {
		/* RFC 1929 §2: a non-zero status, then close. */
		if (conn_queue2(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_FAILURE) < 0) {
			conn_close(c, "client gone");
			break;
		}
		conn_set_state(c, CONN_ST_CLOSING);
		conn_advance(c);
		break;
	}
	case CONN_ST_BIND_WAIT:
		bindcmd_stop(c->bind);
		c->bind = NULL;
		conn_fail_async(c, SOCKS_REP_HOST_UNREACHABLE, "bind timeout");
		break;
	case CONN_ST_CLOSING:
		conn_close(c, c->end);
		break;
	default:
		break;
	}
}

/* --- lifecycle ----------------------------------------------------------- */

static void
conn_free(void *arg)
{
	struct conn *c = arg;

	config_unref(c->cfg);
	free(c->hs);
	free(c->user);
	free(c->target);
	free(c);
}

static void
conn_log_end(struct conn *c, const char *why)
{
	char peer[ADDR_STRLEN], rep[8], extra[160] = "";
	uint64_t up = c->relay.dir[RELAY_UP].bytes, down = c->relay.dir[RELAY_DOWN].bytes;
	uint64_t ms = loop_now(c->env->loop) - c->start_ms;
	uint64_t dropped = 0;
	struct conn_stats *st = &c->env->stats;

	if (c->udp) {
		const struct udpassoc_stats *u = udpassoc_get_stats(c->udp);
		up = u->bytes_up;
		down = u->bytes_down;
		st->udp_dgrams_up += u->dgrams_up;
		st->udp_dgrams_down += u->dgrams_down;
		st->udp_dropped[0] += u->dropped_frag;
		st->udp_dropped[1] += u->dropped_malformed;
		st->udp_dropped[2] += u->dropped_foreign;
		st->udp_dropped[3] += u->dropped_blocked;
		st->udp_dropped[4] += u->dropped_queue;
		st->udp_dropped[5] += u->dropped_unresolved;
		st->udp_dropped[6] += u->dropped_error;
		st->udp_dropped[7] += u->dropped_denied;
		dropped = u->dropped_frag + u->dropped_malformed + u->dropped_foreign +
			  u->dropped_blocked + u->dropped_queue + u->dropped_unresolved +
			  u->dropped_error + u->dropped_denied;
	}
	st->bytes_up += up;
	st->bytes_down += down;
	st->sessions[c->cmd < CONN_CMD_SLOTS ? c->cmd : 0]
		    [c->rep <= SOCKS_REP_ATYP_NOT_SUPPORTED ? c->rep : CONN_REP_NONE]++;
	if (!log_enabled(LOG_LVL_INFO))
		return;
	if (c->udp) {
		const struct udpassoc_stats *u = udpassoc_get_stats(c->udp);
		snprintf(extra, sizeof(extra), " dgrams_up=%" PRIu64 " dgrams_down=%" PRIu64
			" dropped=%" PRIu64, u->dgrams_up, u->dgrams_down, dropped);
	}
	if (c->rep == 0xFF)
		snprintf(rep, sizeof(rep), "-");
	else if (c->version == SOCKS4_VERSION)
		snprintf(rep, sizeof(rep), "%u", (unsigned)(c->rep == SOCKS_REP_SUCCEEDED ?
			SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED));
	else
		snprintf(rep, sizeof(rep), "0x%02x", c->rep);
	log_info("session id=%" PRIu64 " proto=socks%u client=%s user=%s cmd=%s target=%s rep=%s "
		 "up=%" PRIu64 " down=%" PRIu64 "%s duration=%" PRIu64 ".%03" PRIu64 "s end=\"%s\"",
		c->id, c->version, addr_format(&c->peer, peer, sizeof(peer)),
		c->user ? c->user : "-", c->cmd ? proto_cmd_str(c->cmd) : "-",
		c->target ? c->target : "-", rep, up, down, extra, ms / 1000, ms % 1000,
		why ? why : "-");
}

static void
conn_close(struct conn *c, const char *why)
{
	struct conn_env *env = c->env;

	if (c->state == CONN_ST_DEAD)
		return;
	if (c->state == CONN_ST_RELAY)
		relay_stop(&c->relay);
	if (!c->quiet)
		conn_log_end(c, why);
	conn_set_state(c, CONN_ST_DEAD);
	timer_stop(env->loop, &c->timer);
	if (c->hs && c->hs->query) {
		resolver_cancel(c->hs->query);
		c->hs->query = NULL;
	}
	conn_target_close(c);
	if (c->bind) {
		bindcmd_stop(c->bind);
		c->bind = NULL;
	}
	if (c->udp) {
		udpassoc_stop(c->udp);
		c->udp = NULL;
	}
	if (c->fd >= 0) {
		loop_unwatch_closing(env->loop, &c->cw);
		close(c->fd);
		c->fd = -1;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		env->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->ip_counted)
		connlimit_ip_release(env->limits, &c->peer);
	if (c->user_counted)
		connlimit_user_release(env->limits, c->user);
	env->stats.active--;
	if (c->cmd && c->cmd < CONN_CMD_SLOTS)
		env->stats.active_by_cmd[c->cmd]--;
	/* Freed after this batch: later events of the batch may still name it. */
	loop_release(env->loop, &c->rel, conn_free, c);
	if (env->stats.active == 0 && env->on_empty)
		env->on_empty(env->on_empty_arg);
}

static bool
conn_proxy_source_allowed(const struct conn *c)
{
	for (size_t i = 0; i < c->cfg->nproxy_from; i++)
		if (acl_cidr_match(&c->cfg->proxy_from[i], &c->peer))
			return true;
	return false;
}

void
conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local, bool proxy_protocol)
{
	struct conn *c;

	if (env->cfg->max_connections && env->stats.active >= env->cfg->max_connections) {
		/* Accepted and closed at once: a client waiting in the backlog
		 * would only time out later. */
		static struct log_ratelimit rl;
		env->stats.limit_refusals++;
		if (log_ratelimit_ok(&rl, loop_now(env->loop), 1000, 1))
			log_info("max-connections %u reached: refusing new connections",
				env->cfg->max_connections);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	/* The handshake state is mostly buffers and an address list that are
	 * written before they are read: only its scalars are initialised. */
	if (!c || !(c->hs = malloc(sizeof(*c->hs)))) {
		log_warnx("out of memory: dropping a new connection");
		free(c);
		close(fd);
		return;
	}
	buf_init(&c->hs->in, c->hs->in_data, sizeof(c->hs->in_data));
	c->hs->out_len = 0;
	c->hs->connect_deadline_ms = 0;
	c->hs->query = NULL;
	c->hs->res.status = RESOLVER_OK;
	c->hs->res.naddrs = 0;
	c->hs->next_addr = 0;
	c->hs->last_err = 0;
	c->hs->denied = false;
	c->hs->client_eof = false;
	c->env = env;
	c->cfg = config_ref(env->cfg);
	c->id = ++env->next_id;
	c->fd = fd;
	c->target_fd = -1;
	c->peer = *peer;
	c->local = *local;
	addr_unmap(&c->peer);
	c->rep = 0xFF;
	c->version = SOCKS_VERSION;
	c->state = proxy_protocol ? CONN_ST_PROXY : CONN_ST_GREETING;
	c->start_ms = loop_now(env->loop);
	c->next = env->head;
	if (env->head)
		env->head->prev = c;
	env->head = c;
	env->stats.accepted++;
	env->stats.active++;
	watcher_init(&c->cw, fd, conn_on_client, c);
	timer_init(&c->timer, conn_on_timer, c);
	/* One deadline for the whole handshake: a client that trickles bytes
	 * cannot extend it (slowloris). */
	timer_start(env->loop, &c->timer, (uint64_t)c->cfg->timeout_handshake * 1000u);
	if (proxy_protocol && !conn_proxy_source_allowed(c)) {
		env->stats.proxy_rejects++;
		conn_close(c, "not an allowed PROXY protocol source");
		return;
	}
	if (!proxy_protocol && !conn_admit(c))
		return;
	(void)conn_watch(c, &c->cw, LOOP_READ);
}

void
conn_close_all(struct conn_env *env)
{
	while (env->head)
		conn_close(env->head, "shutdown");
}
