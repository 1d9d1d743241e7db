/*
 * conn_command: the session's steps once a request is allowed. CONNECT
 * resolves the name and dials the addresses; BIND listens and waits for its
 * peer; both end in the relay, to which the client's and the target's fds
 * are handed with the handshake's leftovers. UDP ASSOCIATE runs udpassoc
 * until the control connection closes. Each completion stores its result
 * on the connection and re-enters through conn_advance.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bindcmd.h"
#include "config.h"
#include "conn_private.h"
#include "log.h"
#include "net.h"
#include "udpassoc.h"

static enum conn_step conn_bind_direct(struct conn *c);
static void conn_on_relay_end(enum relay_end how, int err, void *arg);
static void conn_on_bind_peer(int peer_fd, int err, const union sockaddr_any *peer, void *arg);
static void conn_on_udp_end(const char *why, void *arg);

/* --- lookups and connects ----------------------------------------------- */

static void conn_on_resolved(const struct resolver_result *res, void *arg);
static enum conn_step conn_dial(struct conn *c);

enum conn_step
conn_start_connect(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	/* The connect timeout covers the name lookup and every attempt
	 * (through parents too). */
	hs->connect_deadline_ms = loop_now(c->env->loop) +
		(uint64_t)c->cfg->timeout_connect * 1000u;
	if (hs->via)
		return conn_parent_start(c);
	return conn_start_direct(c);
}

enum conn_step
conn_start_direct(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (c->cmd == SOCKS_CMD_BIND)
		return conn_bind_direct(c);
	if (hs->req.dst.atyp == SOCKS_ATYP_DOMAIN) {
		hs->lookup = CONN_LOOKUP_TARGET;
		return conn_lookup(c, hs->req.dst.name);
	}
	hs->res.status = RESOLVER_OK;
	if (!conn_request_addr(c, &hs->res.addrs[0]))
		return conn_fail(c, SOCKS_REP_ATYP_NOT_SUPPORTED, "bad address");
	hs->res.naddrs = 1;
	return conn_dial(c);
}

enum conn_step
conn_lookup(struct conn *c, const char *name)
{
	struct conn_hs *hs = c->hs;

	conn_set_state(c, CONN_ST_RESOLVING);
	hs->resolved = false;
	hs->query = resolver_start(c->env->resolver, name, conn_on_resolved, c);
	if (!hs->query)
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no memory for lookup");
	return CONN_STEP_WAIT;
}

static void
conn_on_resolved(const struct resolver_result *res, void *arg)
{
	struct conn *c = arg;

	c->hs->query = NULL;
	c->hs->res = *res;
	c->hs->resolved = true;
	conn_advance(c);
}

/* The rules needed the address to decide (a `to` network before the
 * deciding rule): the first address they allow decides, and when its
 * rule has `via` the parents get that address. */
static enum conn_step
conn_decide_resolved(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct policy_subject s = conn_subject(c);

	hs->undecided = false;
	for (size_t i = 0; i < hs->res.naddrs; i++) {
		union sockaddr_any to = hs->res.addrs[i];
		struct policy_verdict v;

		addr_set_port(&to, hs->req.dst.port);
		v = policy_check_request(&c->env->policy, &s, c->cmd, conn_request_name(c), &to,
			hs->req.dst.port);
		if (v.verdict != ACL_ALLOW)
			continue;
		c->rule_line = v.line;
		hs->rule_egress = v.egress;
		if (!v.via)
			break;
		hs->via = v.via;
		proto_addr_from_sockaddr(&hs->req.dst, &to.sa);
		return conn_parent_start(c);
	}
	return conn_dial(c);
}

enum conn_step
conn_step_resolving(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (!hs->resolved)
		return CONN_STEP_WAIT;
	hs->resolved = false;
	if (hs->lookup != CONN_LOOKUP_TARGET)
		return conn_parent_resolved(c);
	if (hs->res.status != RESOLVER_OK || hs->res.naddrs == 0) {
		log_debug("conn %" PRIu64 ": lookup of %s failed: %s", c->id, hs->req.dst.name,
			resolver_status_str(hs->res.status));
		return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE,
			resolver_status_str(hs->res.status));
	}
	if (hs->undecided)
		return conn_decide_resolved(c);
	return conn_dial(c);
}

enum conn_step
conn_expire_resolving(struct conn *c)
{
	resolver_cancel(c->hs->query);
	c->hs->query = NULL;
	return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE, "lookup timeout");
}

void
conn_target_close(struct conn *c)
{
	if (c->target_fd < 0)
		return;
	loop_unwatch_closing(c->env->loop, &c->tw);
	close(c->target_fd);
	c->target_fd = -1;
}

/* Whether the rules allow the address really connected to (a name
 * resolving into a denied network is refused; logs a refusal), and how
 * the attempt leaves: the allowing rule's clauses over the user's and the
 * global settings. dial's route hook. */
static bool
conn_route(const union sockaddr_any *to, struct dial_route *route, void *arg)
{
	struct conn *c = arg;
	struct policy_subject s = conn_subject(c);
	char a[ADDR_STRLEN], what[400];
	struct policy_verdict v = policy_check_request(&c->env->policy, &s, c->cmd,
		conn_request_name(c), to, c->hs->req.dst.port);

	if (v.verdict == ACL_ALLOW) {
		c->rule_line = v.line;
		conn_route_fill(c, v.egress, to, route);
		return true;
	}
	snprintf(what, sizeof(what), "%s (%s)", c->target ? c->target : "-",
		addr_format(to, a, sizeof(a)));
	policy_log_denied(&c->env->policy, &s, what, &v, loop_now(c->env->loop));
	return false;
}

/* A failed dial as the client's reply. */
static enum conn_step
conn_dial_failed(struct conn *c, enum dial_result r, int err)
{
	if (r == DIAL_DENIED)
		return conn_fail(c, SOCKS_REP_NOT_ALLOWED, "denied by rule");
	return conn_fail(c, proto_rep_from_errno(err), strerror(err));
}

/* Connects to the addresses in hs->res (Happy Eyeballs unless off). */
static enum conn_step
conn_dial(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct dial_options opt = conn_dial_options(c, conn_route);
	enum dial_result r = dial_start(&hs->dial, c->env->loop, &c->tw, hs->res.addrs,
		hs->res.naddrs, hs->req.dst.port, hs->connect_deadline_ms, &opt, conn_on_dialed, c);

	if (r != DIAL_PENDING)
		return conn_dial_failed(c, r, hs->dial.last_err);
	conn_set_state(c, CONN_ST_CONNECTING);
	return CONN_STEP_WAIT;
}

void
conn_on_dialed(enum dial_result r, int err, const union sockaddr_any *bnd, void *arg)
{
	struct conn *c = arg;

	c->hs->dialed = r;
	c->hs->dial_err = err;
	if (r == DIAL_CONNECTED) {
		c->target_fd = c->tw.fd;
		c->hs->bnd = *bnd;
	}
	conn_advance(c);
}

enum conn_step
conn_step_connecting(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (hs->dialed == DIAL_PENDING)
		return CONN_STEP_WAIT;
	if (hs->dialed != DIAL_CONNECTED)
		return conn_dial_failed(c, hs->dialed, hs->dial_err);
	/* RFC 1928 §6: BND.ADDR/BND.PORT is the address the server assigned to
	 * connect to the target. */
	return conn_start_relay(c, &hs->bnd, &hs->dial.route.egress);
}

enum conn_step
conn_expire_connecting(struct conn *c)
{
	dial_stop(&c->hs->dial);
	return conn_dial_failed(c, DIAL_FAILED, ETIMEDOUT);
}

/* The success reply naming bnd, then both fds (the client's and
 * target_fd) go to the relay with what the client sent early and what of
 * the reply is still unsent; the handshake state goes. The client's
 * socket has the global TCP settings from its listener; a rule's (in e)
 * replace them. */
enum conn_step
conn_start_relay(struct conn *c, const union sockaddr_any *bnd, const struct egress *e)
{
	struct conn_hs *hs = c->hs;
	size_t early = buf_len(&hs->in);

	if (!egress_tcp_equal(e, &c->cfg->egress) && net_apply_tcp_egress(c->fd, e) < 0)
		log_warn("conn %" PRIu64 ": client socket: keepalive, user timeout", c->id);
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &bnd->sa) < 0) {
		c->end = "client gone";
		return CONN_STEP_CLOSE;
	}
	if (relay_start(&c->relay, c->env->loop, &c->cw, &c->tw, buf_peek(&hs->in),
		    buf_len(&hs->in), buf_peek(&hs->out), buf_len(&hs->out),
		    c->cfg->timeout_idle * 1000u, conn_on_relay_end, c) < 0) {
		c->end = "no memory for relay";
		return CONN_STEP_CLOSE;
	}
	c->fd = -1;
	c->target_fd = -1;
	conn_meter_start(c);
	if (c->meter) {
		struct relay_throttle *t = account_session_throttle(c->meter);
		relay_set_throttle(&c->relay, t);
		/* The client's early bytes were read with the handshake. */
		if (early)
			t->charge(t, RELAY_UP, early);
	}
	conn_set_state(c, CONN_ST_RELAY);
	conn_hs_free(c->hs);
	c->hs = NULL;
	return CONN_STEP_WAIT;
}

static void
conn_on_relay_end(enum relay_end how, int err, void *arg)
{
	static const char *const ends[] = { "done", "idle timeout", "error", "no memory" };
	struct conn *c = arg;

	c->end = how == RELAY_END_ERROR && err ? strerror(err) : ends[how];
	c->relay_ended = true;
	conn_advance(c);
}

enum conn_step
conn_step_relay(struct conn *c)
{
	return c->relay_ended ? CONN_STEP_CLOSE : CONN_STEP_WAIT;
}

/* --- BIND (RFC 1928 §4, §6: two replies) ------------------------------- */

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

/* The success reply naming a socket of ours (announced), then wait in
 * state next for what comes through it. */
static enum conn_step
conn_reply_bound(struct conn *c, union sockaddr_any *bnd, enum conn_state next)
{
	conn_announce(c, bnd);
	c->rep = SOCKS_REP_SUCCEEDED;
	if (conn_reply(c, SOCKS_REP_SUCCEEDED, &bnd->sa) < 0)
		return CONN_STEP_CLOSE;
	conn_set_state(c, next);
	return CONN_STEP_WAIT;
}

/* The BIND listener's settings: the session's, but no interface: the
 * listener's address (external, or the one the client reached) says where
 * peers come from, and a device would only filter them. */
static void
conn_bind_egress(const struct conn *c, struct egress *e)
{
	conn_egress(c, c->hs->rule_egress, e);
	e->ifname[0] = '\0';
}

enum conn_step
conn_start_bind(struct conn *c)
{
	if (c->hs->via) {
		c->hs->connect_deadline_ms = loop_now(c->env->loop) +
			(uint64_t)c->cfg->timeout_connect * 1000u;
		return conn_parent_start(c);
	}
	return conn_bind_direct(c);
}

static enum conn_step
conn_bind_direct(struct conn *c)
{
	union sockaddr_any expect, listen_on = c->local, bound, src;
	struct conn_hs *hs = c->hs;
	int family = c->local.sa.sa_family;
	bool check_peer = false;
	struct egress e;

	conn_bind_egress(c, &e);
	/* The listener's family follows DST.ADDR when we have an address of
	 * that family to offer, else the control connection's. */
	if (conn_request_addr(c, &expect)) {
		check_peer = !proto_addr_is_unspecified(&hs->req.dst);
		if (conn_source(c, &e, expect.sa.sa_family, &src))
			family = expect.sa.sa_family;
	}
	if (conn_source(c, &e, family, &src))
		listen_on = src;
	c->bind = bindcmd_start(c->env->loop, &listen_on, c->cfg->bind_port_lo,
		c->cfg->bind_port_hi, check_peer ? &expect : NULL, &e, &bound, conn_on_bind_peer,
		c);
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
	return conn_reply_bound(c, &bound, CONN_ST_BIND_WAIT);
}

static void
conn_on_bind_peer(int peer_fd, int err, const union sockaddr_any *peer, void *arg)
{
	struct conn *c = arg;

	if (c->state != CONN_ST_BIND_WAIT) {
		if (peer_fd >= 0)
			close(peer_fd);
		return;
	}
	c->hs->bind_ready = true;
	c->hs->bind_fd = peer_fd;
	c->hs->bind_err = err;
	if (peer)
		c->hs->bind_peer = *peer;
	conn_advance(c);
}

enum conn_step
conn_step_bind_wait(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (!hs->bind_ready)
		return CONN_STEP_WAIT;
	hs->bind_ready = false;
	bindcmd_stop(c->bind);
	c->bind = NULL;
	if (hs->bind_fd < 0) {
		errno = hs->bind_err;
		log_warn("conn %" PRIu64 ": bind: accept", c->id);
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, strerror(hs->bind_err));
	}
	c->target_fd = hs->bind_fd;
	hs->bind_fd = -1;
	watcher_init(&c->tw, c->target_fd, NULL, c); /* the relay's from its start */
	(void)net_set_nodelay(c->target_fd);
	return conn_bind_peer_relay(c, &hs->bind_peer);
}

enum conn_step
conn_bind_peer_relay(struct conn *c, const union sockaddr_any *peer)
{
	struct policy_subject s = conn_subject(c);
	char a[ADDR_STRLEN], what[80];
	struct policy_verdict v;
	struct egress e;

	addr_format(peer, a, sizeof(a));
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %" PRIu64 ": bind: peer %s connected", c->id, a);
	v = policy_check_request(&c->env->policy, &s, SOCKS_CMD_BIND, NULL, peer, addr_port(peer));
	if (v.verdict != ACL_ALLOW) {
		snprintf(what, sizeof(what), "bind peer %s", a);
		policy_log_denied(&c->env->policy, &s, what, &v, loop_now(c->env->loop));
		conn_target_close(c);
		return conn_fail(c, SOCKS_REP_NOT_ALLOWED, "bind peer denied");
	}
	c->rule_line = v.line;
	/* Second reply: BND.ADDR/BND.PORT name the connecting host. */
	conn_bind_egress(c, &e);
	return conn_start_relay(c, peer, &e);
}

enum conn_step
conn_expire_bind_wait(struct conn *c)
{
	bindcmd_stop(c->bind);
	c->bind = NULL;
	return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE, "bind timeout");
}

/* --- limits and quotas ----------------------------------------------------- */

/* The relay may read direction dir again (the shaper's wakeup). */
static void
conn_on_meter_resume(int dir, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_ST_RELAY)
		relay_resume(&c->relay, dir);
}

void
conn_meter_start(struct conn *c)
{
	c->meter = account_session_start(c->env->acct, c->cfg, c->user, &c->peer, c->rule_line,
		conn_on_meter_resume, c);
}

/* A datagram's charge (udpassoc's meter hook). */
static bool
conn_udp_meter(int dir, size_t len, void *arg)
{
	struct conn *c = arg;

	return account_session_take(c->meter, dir, len);
}

/* --- UDP ASSOCIATE (RFC 1928 §7) ------------------------------------------ */

/* The hop of a rule's via that carries UDP: the first one up that can (a
 * SOCKS5 parent, or direct: NULL), else the first that can. */
static const struct upstream *
conn_udp_parent(const struct conn *c, const struct acl_via *via)
{
	const struct upstream *first = NULL;
	uint64_t now = loop_now(c->env->loop);

	for (size_t i = 0; via && i < via->n; i++) {
		const struct upstream *u = &via->hop[i];
		struct parent_state *st;

		if (!upstream_can(u, SOCKS_CMD_UDP_ASSOCIATE))
			continue;
		if (u->proto == UPSTREAM_DIRECT)
			return NULL;
		if (!first)
			first = u;
		st = parents_get(&c->env->parents, u);
		if (st && !parent_is_down(st, now))
			return u;
	}
	return first;
}

/* A UDP datagram's destination (udpassoc's allow hook): the rules, and the
 * parent the deciding rule sends it through. */
static bool
conn_udp_allow(const union sockaddr_any *dst, const char *name, uint16_t port,
	const struct upstream **parent, void *arg)
{
	const struct conn *c = arg;
	struct policy_subject s = conn_subject(c);
	struct policy_verdict v = policy_check_request(&c->env->policy, &s, SOCKS_CMD_UDP_ASSOCIATE,
		name, dst, port);

	*parent = NULL;
	if (v.verdict == ACL_UNDECIDED)
		return !dst; /* a name: look it up, then ask again */
	if (v.verdict != ACL_ALLOW)
		return false;
	/* With the name alone, only a rule that sends it through a parent
	 * (unresolved) decides now; the address gets asked about once it is
	 * known. */
	if (!dst && v.via && v.via->resolve_local)
		return true;
	*parent = conn_udp_parent(c, v.via);
	return true;
}

enum conn_step
conn_start_udp(struct conn *c)
{
	struct udpassoc_options opt;
	union sockaddr_any bnd, src4, src6;
	struct egress e;

	memset(&opt, 0, sizeof(opt));
	conn_egress(c, c->hs->rule_egress, &e);
	opt.port_lo = c->cfg->udp_port_lo;
	opt.port_hi = c->cfg->udp_port_hi;
	opt.external4 = conn_source(c, &e, AF_INET, &src4) ? &src4 : NULL;
	opt.external6 = conn_source(c, &e, AF_INET6, &src6) ? &src6 : NULL;
	opt.egress = &e;
	opt.idle_ms = c->cfg->timeout_udp * 1000u;
	opt.allow = conn_udp_allow;
	opt.allow_arg = c;
	opt.parent.loop = c->env->loop;
	opt.parent.resolver = c->env->resolver;
	opt.parent.parents = &c->env->parents;
	opt.parent.down_after = c->cfg->parent_down_after;
	opt.parent.down_for_s = c->cfg->parent_down_for;
	opt.parent.timeout_ms = c->cfg->timeout_connect * 1000u;
	opt.parent.from4 = opt.external4 ? src4 : (union sockaddr_any){ .sa.sa_family = AF_UNSPEC };
	opt.parent.from6 = opt.external6 ? src6 : (union sockaddr_any){ .sa.sa_family = AF_UNSPEC };
	opt.parent.egress = e;
	conn_meter_start(c);
	if (c->meter) {
		opt.meter = conn_udp_meter;
		opt.meter_arg = c;
	}
	c->udp = udpassoc_start(c->env->loop, c->env->resolver, &opt, &c->peer, &c->local,
		&c->hs->req.dst, &bnd, conn_on_udp_end, c);
	if (!c->udp) {
		log_warn("conn %" PRIu64 ": udp associate", c->id);
		return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "udp socket failed");
	}
	return conn_reply_bound(c, &bnd, CONN_ST_UDP);
}

static void
conn_on_udp_end(const char *why, void *arg)
{
	struct conn *c = arg;

	c->hs->udp_end = why;
	conn_advance(c);
}

enum conn_step
conn_step_udp(struct conn *c)
{
	if (!c->hs->udp_end)
		return CONN_STEP_WAIT;
	c->end = c->hs->udp_end;
	return CONN_STEP_CLOSE;
}
