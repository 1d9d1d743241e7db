/*
 * conn_private: what the three files of the session state machine share.
 * conn.c runs the machine (the state table, transitions, the client's
 * input and output, the connection's life); conn_handshake.c has the steps
 * from the PROXY header to the parsed request; conn_command.c the steps of
 * CONNECT, BIND and UDP ASSOCIATE. Nothing outside those files includes it.
 */
#ifndef SOCKS5D_CONN_PRIVATE_H
#define SOCKS5D_CONN_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "account.h"
#include "buf.h"
#include "conn.h"
#include "dial.h"
#include "egress.h"
#include "loop.h"
#include "parent.h"
#include "policy.h"
#include "proto.h"
#include "pwcheck.h"
#include "relay.h"
#include "resolver.h"

/* Greeting, RFC 1929 request and request may arrive in one segment; the
 * buffer holds the largest single message with room to spare. */
#define CONN_HS_IN_CAP 1024
#define CONN_HS_OUT_CAP 64
/* After a failure reply: how long to wait for the client to read it and
 * close before closing anyway (a close with unread input would send RST
 * and could destroy the reply in flight). */
#define CONN_LINGER_MS 2000
/* A failed password is answered this long after the RFC 1929 request
 * arrived (a timer, never a sleep), whatever the check took: guessing costs
 * the client time, not the server, and the answer's time tells nothing of
 * the user or the hash. */
#define CONN_AUTH_FAIL_DELAY_MS 500

enum conn_state {
	CONN_ST_NEW,               /* allocated, first state not chosen yet (transient) */
	CONN_ST_PROXY,             /* waits for the PROXY protocol header */
	CONN_ST_GREETING,          /* waits for the method-selection message */
	CONN_ST_AUTH,              /* waits for the RFC 1929 request */
	CONN_ST_AUTH_CHECK,        /* waits for the password helpers' verdict */
	CONN_ST_AUTH_DELAY,        /* a failed password: waits out the delay, then says so */
	CONN_ST_REQUEST,           /* waits for the request */
	CONN_ST_REQUEST4,          /* waits for a SOCKS4/4a request */
	CONN_ST_RESOLVING,         /* waits for the resolver's answer */
	CONN_ST_CONNECTING,        /* waits for the outbound connect (dial) */
	CONN_ST_PARENT_CONNECTING, /* waits for the connect to a parent proxy (dial) */
	CONN_ST_PARENT_GREETING,   /* SOCKS5 parent: waits for its method choice */
	CONN_ST_PARENT_AUTH,       /* SOCKS5 parent: waits for its password status */
	CONN_ST_PARENT_REPLY,      /* waits for the parent's reply to the request */
	CONN_ST_PARENT_BIND_WAIT, /* BIND through a parent: first reply sent, waits for the second */
	CONN_ST_BIND_WAIT,        /* BIND: first reply sent, waits for the peer */
	CONN_ST_UDP,              /* UDP ASSOCIATE runs until the client closes */
	CONN_ST_RELAY,            /* the relay owns both fds and its idle timer */
	CONN_ST_CLOSING,          /* reply queued: flush, shut down, drain until EOF */
	CONN_ST_STOPPED,          /* conn_stop ran; freed after the batch (transient) */
	CONN_ST_COUNT
};

enum conn_step {
	CONN_STEP_NEED_MORE, /* wait for more client bytes */
	CONN_STEP_AGAIN,     /* the state changed: run the next step now */
	CONN_STEP_WAIT,      /* waits for a completion or the timer */
	CONN_STEP_CLOSE,     /* stop the connection now (c->end says why) */
};

/* What a state does with the client's input. */
enum conn_input {
	CONN_IN_NONE,    /* not read (no handshake, or the relay's) */
	CONN_IN_PARSE,   /* read into the handshake buffer for the step; EOF ends */
	CONN_IN_KEEP,    /* kept for the relay while it fits; EOF remembered for it */
	CONN_IN_DISCARD, /* read and dropped; EOF ends */
};

/* Where a state's timer deadline comes from. */
enum conn_timeout {
	CONN_TO_NONE,      /* no timer */
	CONN_TO_HANDSHAKE, /* timeout handshake from accept: one deadline for every handshake state */
	CONN_TO_AUTH_DELAY, /* CONN_AUTH_FAIL_DELAY_MS from the RFC 1929 request */
	CONN_TO_CONNECT,    /* timeout connect from the request: lookup and all attempts */
	CONN_TO_PARENT,     /* the current parent's share of the connect budget */
	CONN_TO_BIND,       /* timeout bind from entering */
	CONN_TO_LINGER,     /* CONN_LINGER_MS from entering */
	CONN_TO_INTERIM,    /* log-interim from entering, then again from each expiry; 0: none */
};

/* What the lookup in CONN_ST_RESOLVING is for. */
enum conn_lookup {
	CONN_LOOKUP_TARGET,     /* the target's name, to connect to it */
	CONN_LOOKUP_FOR_PARENT, /* the target's name, for a parent (`resolve local`) */
	CONN_LOOKUP_PARENT,     /* a parent's own name */
};

/* A request going through a rule's `via` list (conn_parent.c). */
struct conn_parent {
	uint8_t order[ACL_VIA_MAX];   /* hops of the list, in the order to try them */
	size_t n, pos;                /* how many, and the next to try */
	const struct upstream *u;     /* the parent tried now */
	struct parent_state *st;      /* its up/down state and counters */
	uint64_t attempt_deadline_ms; /* its share of the connect budget */
	bool io;                      /* the parent's socket reported: fed says what */
	bool answered;                /* counted as answered (BIND: at its first reply) */
	enum upstream_feed fed;
	uint8_t last_rep; /* the reply if no parent is left */
	const char *last_why;
	struct socks_addr dst; /* what the parents are asked for */
	struct upstream_hs hs; /* the handshake with the current parent */
};

/* Handshake-only state: freed when the relay starts. The members up to
 * req are cleared at accept; the rest is written before it is read. */
struct conn_hs {
	struct buf in;                /* client bytes not yet parsed, over in_data */
	struct buf out;               /* replies not yet sent, over out_data */
	const char *client_end;       /* the client's input ended the session: why */
	bool client_eof;              /* the client sent FIN before the relay began */
	uint64_t connect_deadline_ms; /* whole resolve+connect budget */
	struct resolver_query *query; /* pending lookup, NULL otherwise */
	enum conn_lookup lookup;      /* what the lookup is for */
	bool resolved;                /* the lookup answered: res holds it */
	bool undecided;               /* the rules need the address: decided after the lookup */
	const struct acl_via *via;    /* the allowing rule's parents; NULL: direct */
	struct conn_parent *parent;   /* while parents are tried, NULL otherwise */
	enum dial_result dialed;      /* the dial's result (PENDING: none yet) */
	int dial_err;                 /* ... and the errno it reported */
	bool bind_ready;              /* the BIND listener reported: bind_fd/bind_err */
	int bind_fd;                  /* the BIND peer's connection, or -1 */
	int bind_err;                 /* the listener's errno when bind_fd is -1 */
	const char *udp_end;          /* the association ended by itself: why */
	uint64_t auth_at_ms;          /* when the RFC 1929 request arrived */
	bool verdict_ready;           /* the password helpers answered: verdict */
	enum pwcheck_result verdict;
	uint8_t ulen;                     /* the user name the client sent */
	struct proto_request req;         /* the parsed request */
	const struct egress *rule_egress; /* the allowing rule's outbound clauses, or NULL */
	struct pwcheck_job pwjob;         /* the password check (AUTH_CHECK only) */
	char user[256];                   /* the user name the client sent (ulen bytes) */
	struct dial dial;                 /* the outbound connect (CONNECTING) */
	union sockaddr_any bnd;           /* its local address, once connected */
	struct resolver_result res;       /* addresses to try */
	union sockaddr_any bind_peer;     /* who connected to the BIND listener */
	uint8_t out_data[CONN_HS_OUT_CAP];
	uint8_t in_data[CONN_HS_IN_CAP];
};

struct conn {
	struct conn_env *env;
	struct config *cfg;    /* the config this session started with (ref) */
	LIST_ENTRY(conn) link; /* env->conns */
	uint64_t id;
	enum conn_state state; /* written by conn_set_state only */
	int fd;                /* client fd; -1 once handed to the relay */
	int target_fd;         /* outbound or BIND peer fd until the relay; -1 otherwise */
	struct watcher cw;     /* client watcher (the relay's, once it runs) */
	struct watcher tw;     /* target watcher (the relay's, once it runs) */
	struct timer timer;    /* the current state's timeout */
	bool expired;          /* the timer fired: the state's expire runs */
	struct release rel;
	union sockaddr_any peer;  /* client address */
	union sockaddr_any local; /* where the client reached us */
	uint64_t start_ms;
	struct conn_hs *hs; /* NULL once relaying */
	struct relay relay;
	bool relay_ended;              /* the relay finished (end says why) */
	struct bindcmd *bind;          /* BIND listener while waiting for the peer */
	struct udpassoc *udp;          /* UDP ASSOCIATE while it runs */
	uint8_t version;               /* SOCKS_VERSION, or SOCKS4_VERSION */
	uint8_t method;                /* chosen method */
	uint8_t cmd;                   /* 0 until a request was parsed */
	uint8_t rep;                   /* reply sent, STATS_REP_NONE when none */
	char *user;                    /* authenticated user (for logs), or NULL */
	bool ip_counted;               /* holds a per-IP slot (policy_admit) */
	bool user_counted;             /* holds a per-user slot (policy_acquire_user) */
	bool quiet;                    /* refused at admission: logged (rate-limited) already */
	char *target;                  /* "host:port" requested (for logs, ctl), or NULL */
	const char *end;               /* why the session ended */
	const char *kill_end;          /* conn_kill: closed at the next advance, for this reason */
	int rule_line;                 /* the rule that allowed the request (its rate), 0: none */
	struct account_session *meter; /* rate limits and quotas; NULL: unmetered */
	struct account_rec *acct_user; /* the user's record (totals), or NULL */
	uint64_t rate_bytes[2];        /* bytes up, down at the last rate sample */
	uint32_t rate[2];              /* bytes per second over the last sample */
};

/* --- conn.c: the machine --------------------------------------------------- */

/* The only writer of c->state, and the only place that arms or stops the
 * session timer, as the new state's row says. Logs the change at debug and
 * warns about a change the table does not allow. */
void conn_set_state(struct conn *c, enum conn_state next);
/* Runs the current state's steps until one stops (see enum conn_step), then
 * stops the connection or watches the client as the state needs. The entry
 * point of every completion: store the result on c, then call this. */
void conn_advance(struct conn *c);
/* Who c is, for policy's decisions. */
struct policy_subject conn_subject(const struct conn *c);
/* Queues a method choice or an RFC 1929 status (encoded by encode), or a
 * reply in the client's version (a SOCKS5 REP, or SOCKS4 90/91), and
 * sends what the socket takes. -1: the client is gone or the queue full. */
int conn_queue_encoded(struct conn *c, size_t (*encode)(uint8_t out[2], uint8_t v), uint8_t v)
	__attribute__((warn_unused_result));
int conn_reply(struct conn *c, uint8_t rep, const struct sockaddr *bnd)
	__attribute__((warn_unused_result));
/* Reply-then-close: queues the reply with rep, records why, moves to
 * CONN_ST_CLOSING. Returns the step to return. */
enum conn_step conn_fail(struct conn *c, uint8_t rep, const char *why);
/* Closes target_fd (an attempt, a connected target or a BIND peer). */
void conn_target_close(struct conn *c);
/* Frees the handshake state (and a parent attempt's). */
void conn_hs_free(struct conn_hs *hs);
/* Starts the current state's timer again from now (interim lines). */
void conn_restart_timer(struct conn *c);
/* Bytes relayed so far, up and down (UDP: payload bytes). */
void conn_bytes(const struct conn *c, uint64_t *up, uint64_t *down);
/* The session's metering starts, as its limits say (relay or UDP). */
void conn_meter_start(struct conn *c);

/* Steps that several states share. */
enum conn_step conn_step_wait(struct conn *c);
enum conn_step conn_step_closing(struct conn *c);
enum conn_step conn_expire_closing(struct conn *c);

/* --- conn_handshake.c ---------------------------------------------------- */

/* Client rules and per-address limits: at accept, or after the PROXY
 * header names the real client. False: refused (c->end says why). */
bool conn_admit(struct conn *c);
/* The request's DST as a socket address (unmapped), when it is an IP. */
bool conn_request_addr(const struct conn *c, union sockaddr_any *out);
/* The requested domain name, or NULL for an address. */
const char *conn_request_name(const struct conn *c);
/* The session's outbound settings: a rule's clauses (rule, may be NULL)
 * over the user's line over the global ones. */
void conn_egress(const struct conn *c, const struct egress *rule, struct egress *out);
/* The source address of family that e gives the session (drawn from a
 * prefix: the session's random one, or the user's). False: e has none. */
bool conn_source(const struct conn *c, const struct egress *e, int family, union sockaddr_any *out);
/* How an attempt to `to` leaves: rule's settings over the user's and the
 * global ones, and their source of to's family (dial's route hooks). */
void conn_route_fill(const struct conn *c, const struct egress *rule, const union sockaddr_any *to,
	struct dial_route *route);
/* The session's dial options with route as the hook: Happy Eyeballs'
 * delay, and the family tried first. */
struct dial_options conn_dial_options(struct conn *c, dial_route_cb route);

enum conn_step conn_step_proxy(struct conn *c);
enum conn_step conn_step_greeting(struct conn *c);
enum conn_step conn_step_auth(struct conn *c);
enum conn_step conn_step_auth_check(struct conn *c);
enum conn_step conn_step_request(struct conn *c);
enum conn_step conn_step_request4(struct conn *c);
enum conn_step conn_expire_handshake(struct conn *c);
enum conn_step conn_expire_auth_delay(struct conn *c);

/* --- conn_command.c ------------------------------------------------------ */

/* Start what an allowed request asks for (the reply is theirs). */
enum conn_step conn_start_connect(struct conn *c);
enum conn_step conn_start_bind(struct conn *c);
enum conn_step conn_start_udp(struct conn *c);

/* Starts the lookup of name (for what hs->lookup says): RESOLVING. */
enum conn_step conn_lookup(struct conn *c, const char *name);
/* The request goes out directly (CONNECT or BIND), not through a parent. */
enum conn_step conn_start_direct(struct conn *c);
/* dial's done callback: stores the result and advances. */
void conn_on_dialed(enum dial_result r, int err, const union sockaddr_any *bnd, void *arg);
/* The success reply naming bnd, then both fds to the relay. */
enum conn_step conn_start_relay(struct conn *c, const union sockaddr_any *bnd,
	const struct egress *e);
/* The rules' verdict on the peer that connected to a BIND (logged when
 * refused): the relay starts, or the client is told. */
enum conn_step conn_bind_peer_relay(struct conn *c, const union sockaddr_any *peer);

enum conn_step conn_step_resolving(struct conn *c);
enum conn_step conn_step_connecting(struct conn *c);
enum conn_step conn_step_bind_wait(struct conn *c);
enum conn_step conn_step_udp(struct conn *c);
enum conn_step conn_step_relay(struct conn *c);
enum conn_step conn_expire_resolving(struct conn *c);
enum conn_step conn_expire_connecting(struct conn *c);
enum conn_step conn_expire_bind_wait(struct conn *c);
/* RELAY, UDP: a log-interim line, and the next one armed. */
enum conn_step conn_expire_interim(struct conn *c);

/* --- conn_parent.c ------------------------------------------------------- */

/* A request whose rule has `via`: try its parents in order. */
enum conn_step conn_parent_start(struct conn *c);
/* The lookups of CONN_LOOKUP_FOR_PARENT and CONN_LOOKUP_PARENT answered. */
enum conn_step conn_parent_resolved(struct conn *c);

enum conn_step conn_step_parent_connecting(struct conn *c);
enum conn_step conn_step_parent(struct conn *c);
enum conn_step conn_expire_parent(struct conn *c);
enum conn_step conn_expire_parent_bind_wait(struct conn *c);

#endif
