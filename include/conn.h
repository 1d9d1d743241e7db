/*
 * conn: one client connection's state machine, from the greeting to the end
 * of its relay: greeting -> (RFC 1929 auth) -> request -> resolve/connect,
 * bind or udp -> reply -> relay -> close. It owns the client fd from accept
 * on. Decisions are policy's; counters and the session line are stats'.
 */
#ifndef SOCKS5D_CONN_H
#define SOCKS5D_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "addr.h"
#include "parent.h"
#include "policy.h"
#include "siphash.h"
#include "stats.h"

struct loop;
struct account;
struct config;
struct resolver;
struct connlimit;
struct conn;
struct pwcheck;

LIST_HEAD(conn_list, conn);

/* What every connection shares: the loop, the config new sessions use, the
 * resolver, the decisions' state, the live connections (for shutdown) and
 * the counters. */
struct conn_env {
	struct loop *loop;
	struct config *cfg; /* config for new sessions; sessions hold a ref */
	struct resolver *resolver;
	struct pwcheck *pwcheck; /* the password helpers; NULL without users */
	struct account *acct;    /* limits, quotas, per-user totals; NULL: none */
	uint64_t rates_at_ms;    /* loop time of the last conn_sample_rates */
	struct policy policy;    /* limits, lockouts, refusal logging */
	struct stats stats;
	struct parents parents; /* the parents' up/down state and counters */
	struct conn_list conns; /* live connections */
	uint64_t next_id;
	uint64_t id_step, id_base;   /* ids are id_base + 1 + k * id_step (workers: distinct) */
	void (*on_empty)(void *arg); /* called when active drops to 0 (shutdown) */
	void *on_empty_arg;
	/* `external PREFIX hash-user`: the key of the users' hash, the same
	 * in every worker and across restarts (main derives it). */
	uint8_t hash_user_key[SIPHASH_KEY_LEN];
	/* `external PREFIX random`: a secret of this process; the session's
	 * addresses are its hash of the session id. */
	uint8_t random_key[SIPHASH_KEY_LEN];
};

/* Zeroes env and wires its parts together; limits may be NULL (no per-IP
 * or per-user limits, no lockout). conn_env_free frees what init made
 * (after conn_stop_all). */
void conn_env_init(struct conn_env *env, struct loop *loop, struct config *cfg,
	struct resolver *resolver, struct connlimit *limits);
void conn_env_free(struct conn_env *env);

/* Takes the accepted fd (nonblocking; TCP_NODELAY is the listener's job,
 * usually inherited from the listening socket). On failure the fd is
 * closed and the reason logged. peer/local are the addresses of the client
 * connection. */
void conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local, bool proxy_protocol);
/* Stops every connection at once (the end of the shutdown drain). */
void conn_stop_all(struct conn_env *env);

/* Gives the sessions their limits, quotas and per-user totals (before the
 * first accept); acct stays the caller's. */
void conn_env_set_account(struct conn_env *env, struct account *acct);

/* What `socks5d ctl sessions` shows of a running session. */
struct conn_info {
	uint64_t id;
	const union sockaddr_any *client;
	const char *user;            /* NULL: none */
	const char *target;          /* NULL: no request yet */
	uint8_t cmd;                 /* 0: no request yet */
	const char *state;           /* the state's name */
	uint64_t up, down;           /* bytes relayed so far */
	uint32_t rate_up, rate_down; /* bytes per second over the last sample */
	uint64_t age_ms;
};
/* Calls cb for the running sessions whose id is below `below`, newest
 * first, until cb returns false. */
typedef bool (*conn_info_cb)(const struct conn_info *ci, void *arg);
void conn_each_below(struct conn_env *env, uint64_t below, conn_info_cb cb, void *arg);
/* Closes session id (logged with end="killed"). False: no such session. */
bool conn_kill_id(struct conn_env *env, uint64_t id);
/* Each running session's rate since the last call (every second or so). */
void conn_sample_rates(struct conn_env *env);
/* Running sessions' bytes into stats (live_up, live_down) and their users'
 * records: call before reading either. */
void conn_live_totals(struct conn_env *env);

/* The state table, for tests and the check of ARCHITECTURE.md's diagram:
 * states are numbered 0 .. conn_state_count() - 1. */
size_t conn_state_count(void);
const char *conn_state_name(size_t state);
/* Whether the table lets state `to` follow state `from`. */
bool conn_state_may_follow(size_t from, size_t to);
/* Called on every state change of every connection (tests); NULL: none. */
typedef void (*conn_trace_cb)(uint64_t id, size_t from, size_t to, void *arg);
void conn_set_trace(conn_trace_cb cb, void *arg);

#endif
