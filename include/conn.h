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
#include "policy.h"
#include "siphash.h"
#include "stats.h"

struct loop;
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
	struct policy policy;    /* limits, lockouts, refusal logging */
	struct stats stats;
	struct conn_list conns; /* live connections */
	uint64_t next_id;
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
 * or per-user limits, no lockout). */
void conn_env_init(struct conn_env *env, struct loop *loop, struct config *cfg,
	struct resolver *resolver, struct connlimit *limits);

/* Takes the accepted fd (nonblocking; TCP_NODELAY is the listener's job,
 * usually inherited from the listening socket). On failure the fd is
 * closed and the reason logged. peer/local are the addresses of the client
 * connection. */
void conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local, bool proxy_protocol);
/* Stops every connection at once (the end of the shutdown drain). */
void conn_stop_all(struct conn_env *env);

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
