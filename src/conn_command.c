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

static enum conn_step conn_start_relay(struct conn *c, const union sockaddr_any *bnd,
	const struct egress *e);
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

	/* The connect timeout covers the name lookup and every attempt. */
	hs->connect_deadline_ms = loop_now(c->env->loop) +
		(uint64_t)c->cfg->timeout_connect * 1000u;
	if (hs->req.dst.atyp == SOCKS_ATYP_DOMAIN) {
		conn_set_state(c, CONN_ST_RESOLVING);
		hs->query = resolver_start(c->env->resolver, hs->req.dst.name, conn_on_resolved, c);
		if (!hs->query)
			return conn_fail(c, SOCKS_REP_GENERAL_FAILURE, "no memory for lookup");
		return CONN_STEP_WAIT;
	}
	hs->res.status = RESOLVER_OK;
	if (!conn_request_addr(c, &hs->res.addrs[0]))
		return conn_fail(c, SOCKS_REP_ATYP_NOT_SUPPORTED, "bad address");
	hs->res.naddrs = 1;
	return conn_dial(c);
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

enum conn_step
conn_step_resolving(struct conn *c)
{
	struct conn_hs *hs = c->hs;

	if (!hs->resolved)
		return CONN_STEP_WAIT;
	if (hs->res.status != RESOLVER_OK || hs->res.naddrs == 0) {
		log_debug("conn %" PRIu64 ": lookup of %s failed: %s", c->id, hs->req.dst.name,
			resolver_status_str(hs->res.status));
		return conn_fail(c, SOCKS_REP_HOST_UNREACHABLE,
			resolver_status_str(hs->res.status));
	}
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
		conn_egress(c, v.egress, &route->egress);
		(void)conn_source(c, &route->egress, to->sa.sa_family, &route->from);
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

static void conn_on_dialed(enum dial_result r, int err, const union sockaddr_any *bnd, void *arg);

/* Connects to the addresses in hs->res (Happy Eyeballs unless off). */
static enum conn_step
conn_dial(struct conn *c)
{
	struct conn_hs *hs = c->hs;
	struct dial_options opt = {
		.route = conn_route,
		.route_arg = c,
		.delay_ms = c->cfg->happy_eyeballs_ms,
		/* RFC 8305 §4 (RFC 6724's order): IPv6 first unless the
		 * configuration prefers IPv4. */
		.first_family = c->cfg->resolve_prefer == AF_INET ? AF_INET : AF_INET6,
	};
	enum dial_result r = dial_start(&hs->dial, c->env->loop, &c->tw, hs->res.addrs,
		hs->res.naddrs, hs->req.dst.port, hs->connect_deadline_ms, &opt, conn_on_dialed, c);

	if (r != DIAL_PENDING)
		return conn_dial_failed(c, r, hs->dial.last_err);
	conn_set_state(c, CONN_ST_CONNECTING);
	return CONN_STEP_WAIT;
}

static void
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
static enum conn_step
conn_start_relay(struct conn *c, const union sockaddr_any *bnd, const struct egress *e)
{
	struct conn_hs *hs = c->hs;

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
	conn_set_state(c, CONN_ST_RELAY);
	free(c->hs);
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
	struct policy_subject s = conn_subject(c);
	const union sockaddr_any *peer = &hs->bind_peer;
	char a[ADDR_STRLEN], what[80];
	struct policy_verdict v;
	struct egress e;

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
	(void)net_set_nodelay(c->target_fd);
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

/* --- UDP ASSOCIATE (RFC 1928 §7) ------------------------------------------ */

/* A UDP datagram's destination (udpassoc's allow hook). */
static bool
conn_udp_allow(const union sockaddr_any *dst, const char *name, void *arg)
{
	const struct conn *c = arg;
	struct policy_subject s = conn_subject(c);

	return policy_check_request(&c->env->policy, &s, SOCKS_CMD_UDP_ASSOCIATE, name, dst,
		       addr_port(dst))
		       .verdict == ACL_ALLOW;
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
