/*
 * conn: one client connection's state machine, from the greeting to the end
 * of its relay: greeting -> (RFC 1929 auth) -> request -> resolve/connect ->
 * reply -> relay -> close. It owns the client fd from accept on.
 */
#ifndef SOCKS5D_CONN_H
#define SOCKS5D_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"

struct loop;
struct config;
struct resolver;
struct connlimit;
struct conn;

/* Commands as counter indexes: 0 is "no request yet". */
#define CONN_CMD_SLOTS 4
/* Reply codes as counter indexes: REP 0x00..0x08, then "no reply". */
#define CONN_REP_SLOTS 10
#define CONN_REP_NONE 9

/* Process-wide counters (metrics, SIGUSR1 and shutdown lines). */
struct conn_stats {
	uint64_t accepted;
	uint64_t active;
	uint64_t active_by_cmd[CONN_CMD_SLOTS];
	uint64_t sessions[CONN_CMD_SLOTS][CONN_REP_SLOTS]; /* ended, by command and reply */
	uint64_t auth_failures;
	uint64_t client_denials;  /* closed by a client rule */
	uint64_t rule_denials;    /* requests refused by a rule (REP 0x02) */
	uint64_t limit_refusals;  /* closed by a connection/session limit */
	uint64_t proxy_rejects;   /* bad or unauthorised PROXY headers */
	uint64_t bytes_up;        /* client -> target */
	uint64_t bytes_down;      /* target -> client */
	uint64_t udp_dgrams_up, udp_dgrams_down;
	uint64_t udp_dropped[8];  /* by reason: see conn_udp_drop_names */
};

/* Names of the udp_dropped reasons, in index order. */
extern const char *const conn_udp_drop_names[8];

/* What every connection shares: the loop, the config new sessions use, the
 * resolver, the list of live connections (for shutdown) and counters. */
struct conn_env {
	struct loop *loop;
	struct config *cfg;          /* config for new sessions; sessions hold a ref */
	struct resolver *resolver;
	struct connlimit *limits;    /* per-IP, per-user counts and auth lockouts */
	struct conn *head;           /* live connections */
	uint64_t next_id;
	struct conn_stats stats;
	int64_t hash_budget_us;      /* crypt(3) time the loop may still spend */
	uint64_t hash_budget_at_ms;  /* loop time of the last refill */
	void (*on_empty)(void *arg); /* called when active drops to 0 (shutdown) */
	void *on_empty_arg;
};

/* Takes the accepted fd (nonblocking; TCP_NODELAY is the listener's job,
 * usually inherited from the listening socket). On failure the fd is
 * closed and the reason logged. peer/local are the addresses of the client
 * connection. */
void conn_accept(struct conn_env *env, int fd, const union sockaddr_any *peer,
	const union sockaddr_any *local, bool proxy_protocol);
/* Closes every connection at once (end of the shutdown drain). */
void conn_close_all(struct conn_env *env);

#endif
