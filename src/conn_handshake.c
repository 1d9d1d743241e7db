/*
 * conn_handshake: the session's steps from the PROXY header to the parsed
 * request (RFC 1928 §3-§4, RFC 1929, SOCKS4/4a): parse with proto, decide
 * with policy, queue the answer, move on. What a request then starts is
 * conn_command's.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn_private.h"
#include "log.h"
#include "proxyproto.h"
#include "siphash.h"
#include "stats.h"

static enum conn_step conn_dispatch_request(struct conn *c);

enum conn_step
conn_expire_handshake(struct conn *c)
{
	c->end = "handshake timeout";
	return CONN_STEP_CLOSE;
}

bool
conn_admit(struct conn *c)
{
	struct policy_subject s = conn_subject(c);
	enum policy_admission a = policy_admit(&c->env->policy, &s, loop_now(c->env->loop),
		&c->ip_counted);

	if (a == POLICY_ADMITTED)
		return true;
	c->quiet = true;
	c->end = policy_admission_str(a);
	return false;
}

/* HAProxy PROXY protocol: the header carries the real client address,
 * which replaces the balancer's as the client for rules, limits, logs and
 * the UDP source check. The local address stays ours (it is where UDP and
 * BIND sockets are opened). */
enum conn_step
conn_step_proxy(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proxyproto_result pr;
	size_t used;
	enum proxyproto_status st = proxyproto_parse(buf_peek(&hs->in), buf_len(&hs->in), &pr,
		&used);

	if (st == PROXYPROTO_NEED_MORE && buf_len(&hs->in) < hs->in.cap)
		return CONN_STEP_NEED_MORE;
	if (st != PROXYPROTO_OK) {
		c->env->stats.proxy_rejects++;
		c->end = st == PROXYPROTO_NEED_MORE ? "PROXY header too large"
						    : proxyproto_status_str(st);
		return CONN_STEP_CLOSE;
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
		return CONN_STEP_CLOSE;
	conn_set_state(c, CONN_ST_GREETING);
	return CONN_STEP_AGAIN;
}

enum conn_step
conn_step_greeting(struct conn *c)
{
	enum proto_status st;
	struct proto_greeting g;
	struct conn_hs *hs = c->hs;
	size_t used;

	if (buf_len(&hs->in) == 0)
		return CONN_STEP_NEED_MORE;
	if (buf_peek(&hs->in)[0] == SOCKS4_VERSION && c->cfg->socks4) {
		c->version = SOCKS4_VERSION;
		conn_set_state(c, CONN_ST_REQUEST4);
		return CONN_STEP_AGAIN;
	}
	st = proto_parse_greeting(buf_peek(&hs->in), buf_len(&hs->in), &g, &used);
	if (st == PROTO_NEED_MORE)
		return CONN_STEP_NEED_MORE;
	if (st != PROTO_OK && st != PROTO_ERR_NO_METHODS) {
		/* RFC 1928 gives no reply for a wrong version: close silently. */
		c->end = proto_status_str(st);
		return CONN_STEP_CLOSE;
	}
	/* NMETHODS 0 offers nothing we accept: X'FF' says so before the
	 * close, as for any greeting without an acceptable method (§3). */
	c->method = st == PROTO_OK ? proto_choose_method(&g, c->cfg->methods, c->cfg->nmethods)
				   : SOCKS_METHOD_NO_ACCEPTABLE;
	if (st == PROTO_OK)
		buf_consume(&hs->in, used);
	if (conn_queue_encoded(c, proto_encode_method, c->method) < 0)
		return CONN_STEP_CLOSE;
	if (c->method == SOCKS_METHOD_NO_ACCEPTABLE) {
		c->end = st == PROTO_OK ? "no acceptable method" : proto_status_str(st);
		conn_set_state(c, CONN_ST_CLOSING);
		return CONN_STEP_AGAIN;
	}
	conn_set_state(c, c->method == SOCKS_METHOD_PASSWORD ? CONN_ST_AUTH : CONN_ST_REQUEST);
	return CONN_STEP_AGAIN;
}

static void conn_on_verdict(enum pwcheck_result r, bool hashed, void *arg);

enum conn_step
conn_step_auth(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct policy_subject s = conn_subject(c);
	struct proto_userpass up;
	size_t used;
	enum proto_status st = proto_parse_userpass(buf_peek(&hs->in), buf_len(&hs->in), &up,
		&used);

	if (st == PROTO_NEED_MORE)
		return CONN_STEP_NEED_MORE;
	if (st != PROTO_OK) {
		/* RFC 1929 §2: any non-zero status means failure, then close. */
		c->end = proto_status_str(st);
		if (conn_queue_encoded(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_FAILURE) < 0)
			return CONN_STEP_CLOSE;
		conn_set_state(c, CONN_ST_CLOSING);
		return CONN_STEP_AGAIN;
	}
	buf_consume(&hs->in, used);
	hs->auth_at_ms = loop_now(c->env->loop);
	hs->ulen = up.ulen;
	memcpy(hs->user, up.user, up.ulen);
	hs->user[up.ulen] = '\0';
	if (policy_auth_locked(&c->env->policy, &s, up.user, up.ulen, hs->auth_at_ms)) {
		explicit_bzero(&up.pass, sizeof(up.pass));
		c->end = "locked out";
		conn_set_state(c, CONN_ST_AUTH_DELAY);
		return CONN_STEP_WAIT;
	}
	if (!c->env->pwcheck) {
		/* No helpers (they could not be started): nothing can say yes. */
		explicit_bzero(&up.pass, sizeof(up.pass));
		hs->verdict = PWCHECK_ERROR;
		hs->verdict_ready = true;
		conn_set_state(c, CONN_ST_AUTH_CHECK);
		return CONN_STEP_AGAIN;
	}
	/* The password goes to the helpers, which hold the hashes; the
	 * verdict comes back as an event (conn_on_verdict). */
	pwcheck_submit(c->env->pwcheck, &hs->pwjob, &c->peer, up.user, up.ulen, up.pass, up.plen,
		conn_on_verdict, c);
	explicit_bzero(&up.pass, sizeof(up.pass));
	conn_set_state(c, CONN_ST_AUTH_CHECK);
	return CONN_STEP_WAIT;
}

static void
conn_on_verdict(enum pwcheck_result r, bool hashed, void *arg)
{
	struct conn *c = arg;

	c->hs->verdict = r;
	c->hs->verdict_ready = true;
	conn_advance(c);
}

enum conn_step
conn_step_auth_check(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct policy_subject s = conn_subject(c);

	if (!hs->verdict_ready)
		return CONN_STEP_WAIT;
	policy_auth_verdict(&c->env->policy, &s, hs->user, hs->ulen, hs->verdict,
		loop_now(c->env->loop));
	if (hs->verdict != PWCHECK_OK) {
		/* Answered at the fixed delay (conn_expire_auth_delay). */
		c->end = hs->verdict == PWCHECK_FAIL ? "auth failed" : "auth not checked";
		conn_set_state(c, CONN_ST_AUTH_DELAY);
		return CONN_STEP_WAIT;
	}
	c->user = strdup(hs->user);
	if (!c->user || conn_queue_encoded(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_OK) < 0)
		return CONN_STEP_CLOSE;
	if (c->env->acct)
		c->acct_user = account_user(c->env->acct, c->user);
	conn_set_state(c, CONN_ST_REQUEST);
	return CONN_STEP_AGAIN;
}

enum conn_step
conn_expire_auth_delay(struct conn *c)
{
	/* RFC 1929 §2: a non-zero status, then close. */
	if (conn_queue_encoded(c, proto_encode_auth_status, SOCKS_AUTH_STATUS_FAILURE) < 0) {
		c->end = "client gone";
		return CONN_STEP_CLOSE;
	}
	conn_set_state(c, CONN_ST_CLOSING);
	return CONN_STEP_AGAIN;
}

enum conn_step
conn_step_request(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	size_t used;
	enum proto_status st = proto_parse_request(buf_peek(&hs->in), buf_len(&hs->in), &hs->req,
		&used);

	if (st == PROTO_NEED_MORE)
		return CONN_STEP_NEED_MORE;
	if (st == PROTO_ERR_VERSION) {
		c->end = proto_status_str(st);
		return CONN_STEP_CLOSE;
	}
	if (st != PROTO_OK)
		return conn_fail(c, proto_rep_for_status(st), proto_status_str(st));
	buf_consume(&hs->in, used);
	return conn_dispatch_request(c);
}

enum conn_step
conn_step_request4(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct proto_socks4_request r4;
	size_t used;
	enum proto_status st = proto_parse_socks4_request(buf_peek(&hs->in), buf_len(&hs->in), &r4,
		&used);

	if (st == PROTO_NEED_MORE)
		return CONN_STEP_NEED_MORE;
	if (st != PROTO_OK)
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, proto_status_str(st));
	buf_consume(&hs->in, used);
	/* The USERID is not authenticated: logged only at debug. */
	if (log_enabled(LOG_LVL_DEBUG) && r4.userid[0]) {
		char u[LOG_ESCAPED_SIZE(sizeof(r4.userid))];
		log_debug("conn %" PRIu64 ": SOCKS4 userid \"%s\" (not authenticated)", c->id,
			log_escape(r4.userid, strlen(r4.userid), u, sizeof(u)));
	}
	hs->req.cmd = r4.cmd;
	hs->req.dst = r4.dst;
	return conn_dispatch_request(c);
}

/* --- the request --------------------------------------------------------- */

bool
conn_request_addr(const struct conn *c, union sockaddr_any *out)
{
	socklen_t len;

	if (proto_addr_to_sockaddr(&c->hs->req.dst, &out->ss, &len) < 0)
		return false;
	addr_unmap(out);
	return true;
}

const char *
conn_request_name(const struct conn *c)
{
	return c->hs->req.dst.atyp == SOCKS_ATYP_DOMAIN ? c->hs->req.dst.name : NULL;
}

void
conn_egress(const struct conn *c, const struct egress *rule, struct egress *out)
{
	if (rule)
		*out = *rule;
	else
		egress_init(out);
	egress_merge(out, config_user_egress(c->cfg, c->user));
	egress_merge(out, &c->cfg->egress);
}

void
conn_route_fill(const struct conn *c, const struct egress *rule, const union sockaddr_any *to,
	struct dial_route *route)
{
	conn_egress(c, rule, &route->egress);
	(void)conn_source(c, &route->egress, to->sa.sa_family, &route->from);
}

struct dial_options
conn_dial_options(struct conn *c, dial_route_cb route)
{
	struct dial_options opt = {
		.route = route,
		.route_arg = c,
		.delay_ms = c->cfg->happy_eyeballs_ms,
		/* RFC 8305 §4 (RFC 6724's order): IPv6 first unless the
		 * configuration prefers IPv4. */
		.first_family = c->cfg->resolve_prefer == AF_INET ? AF_INET : AF_INET6,
	};
	return opt;
}

bool
conn_source(const struct conn *c, const struct egress *e, int family, union sockaddr_any *out)
{
	uint8_t rnd[EGRESS_RANDOM_LEN];

	/* The session's random bits: the process's secret hash of the
	 * session id, no system call (ids never repeat in a process). */
	if (egress_source_drawn(e, family)) {
		uint64_t msg[2] = { c->id, 0 };
		for (size_t half = 0; half < 2; half++) {
			uint64_t h;
			msg[1] = half;
			h = siphash24(c->env->random_key, msg, sizeof(msg));
			memcpy(rnd + 8 * half, &h, sizeof(h));
		}
	} else {
		memset(rnd, 0, sizeof(rnd));
	}
	return egress_source(e, family, c->env->hash_user_key, c->user, rnd, out);
}

/* Quotas (REP 0x02 once one with `then close` is reached; the account
 * logs the first refusal of a period). False: refused, reply queued. */
static bool
conn_quota_admits(struct conn *c, enum conn_step *fail)
{
	enum account_admission a;

	if (!c->env->acct)
		return true;
	a = account_admit(c->env->acct, c->cfg, c->id, c->user, &c->peer);
	if (a == ACCOUNT_ADMITTED)
		return true;
	c->env->stats.quota_refusals++;
	if (a == ACCOUNT_QUOTA_REACHED)
		*fail = conn_fail(c, SOCKS_REP_NOT_ALLOWED, "quota reached");
	else
		*fail = conn_fail(c, SOCKS_REP_NOT_ALLOWED, "too many clients with limits");
	return false;
}

/* The request's rules (decided now when they can be: a rule on the
 * destination address waits for the address, after resolution) and the
 * per-user session limit. False: refused, with the reply queued. */
static bool
conn_request_allowed(struct conn *c, enum conn_step *fail)
{
	struct conn_hs *hs = c->hs;
	struct policy_subject s = conn_subject(c);
	uint64_t now = loop_now(c->env->loop);
	bool udp = c->cmd == SOCKS_CMD_UDP_ASSOCIATE;
	union sockaddr_any dst, *dstp = NULL;
	struct policy_verdict v;

	/* UDP ASSOCIATE's DST is the client's own endpoint, no destination:
	 * neither its address, name nor port meets the rules, which judge
	 * each datagram's destination (issue 17). */
	if (!udp && !proto_addr_is_unspecified(&hs->req.dst) && conn_request_addr(c, &dst))
		dstp = &dst;
	v = policy_check_request(&c->env->policy, &s, c->cmd, udp ? NULL : conn_request_name(c),
		dstp, udp ? 0 : hs->req.dst.port);
	if (v.verdict == ACL_DENY) {
		policy_log_denied(&c->env->policy, &s, c->target ? c->target : "-", &v, now);
		*fail = conn_fail(c, SOCKS_REP_NOT_ALLOWED, "denied by rule");
		return false;
	}
	hs->undecided = v.verdict == ACL_UNDECIDED;
	hs->via = v.via;
	c->rule_line = v.line;
	if (!conn_quota_admits(c, fail))
		return false;
	/* BIND and UDP ASSOCIATE leave as the rule that allowed the request
	 * says (CONNECT: as the rule that allows each address). */
	hs->rule_egress = v.verdict == ACL_ALLOW ? v.egress : NULL;
	if (c->user && c->cfg->max_sessions_per_user && c->env->policy.limits) {
		if (!policy_acquire_user(&c->env->policy, &s, now)) {
			*fail = conn_fail(c, SOCKS_REP_NOT_ALLOWED, "max-sessions-per-user");
			return false;
		}
		c->user_counted = true;
	}
	return true;
}

/* A parsed request (SOCKS5 or SOCKS4): start what it asks for. */
static enum conn_step
conn_dispatch_request(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	enum conn_step fail;
	char target[300];

	c->cmd = hs->req.cmd;
	c->env->stats.active_by_cmd[c->cmd]++;
	/* The target string only feeds log lines and `socks5d ctl sessions`:
	 * not built when neither is there (it is most of a session's
	 * user-space work). */
	if (log_enabled(LOG_LVL_INFO) || c->cfg->control[0]) {
		proto_addr_format(&hs->req.dst, target, sizeof(target));
		c->target = strdup(target);
		if (!c->target)
			return CONN_STEP_CLOSE;
	}
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %" PRIu64 ": request %s %s", c->id, proto_cmd_str(c->cmd),
			c->target);
	if (!conn_request_allowed(c, &fail))
		return fail;
	if (c->cmd == SOCKS_CMD_BIND)
		return conn_start_bind(c);
	if (c->cmd == SOCKS_CMD_UDP_ASSOCIATE)
		return conn_start_udp(c);
	return conn_start_connect(c);
}
