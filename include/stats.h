/*
 * stats: the process's session counters and the one line each finished
 * session logs. conn reports every session's end here (with udpassoc's
 * datagram counters for UDP ASSOCIATE); metrics, the status line and the
 * SIGUSR1/shutdown lines read the counters.
 */
#ifndef SOCKS5D_STATS_H
#define SOCKS5D_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "udpassoc.h"

/* Commands as counter indexes: 0 is "no request yet". */
#define STATS_CMD_SLOTS 4
/* Reply codes as counter indexes: REP 0x00..0x08, then STATS_REP_NONE. */
#define STATS_REP_SLOTS 10
/* A session's reply when none was sent (closed before, or silently). */
#define STATS_REP_NONE 9

struct stats {
	uint64_t accepted;
	uint64_t active;
	uint64_t active_by_cmd[STATS_CMD_SLOTS];
	uint64_t sessions[STATS_CMD_SLOTS][STATS_REP_SLOTS]; /* ended, by command and reply */
	uint64_t auth_failures;
	uint64_t client_denials; /* closed by a client rule */
	uint64_t rule_denials;   /* requests refused by a rule (REP 0x02) */
	uint64_t limit_refusals; /* closed by a connection/session limit */
	uint64_t proxy_rejects;  /* bad or unauthorised PROXY headers */
	uint64_t quota_refusals; /* requests refused by a quota (or a full client table) */
	uint64_t bytes_up;       /* client -> target (ended sessions) */
	uint64_t bytes_down;     /* target -> client (ended sessions) */
	uint64_t live_up;        /* running sessions so far (conn_live_totals) */
	uint64_t live_down;
	uint64_t udp_dgrams_up, udp_dgrams_down;
	uint64_t udp_dropped[UDPASSOC_DROP_REASONS];
};

/* What a finished session reports. */
struct stats_session {
	uint64_t id;
	uint8_t version; /* SOCKS_VERSION or SOCKS4_VERSION */
	uint8_t cmd;     /* 0: no request */
	uint8_t rep;     /* REP sent, or STATS_REP_NONE */
	const union sockaddr_any *client;
	const char *user;   /* NULL: none */
	const char *target; /* NULL: none, or not recorded */
	const char *end;    /* why it ended */
	uint64_t up, down;  /* bytes relayed (UDP: payload bytes) */
	uint64_t duration_ms;
	const struct udpassoc_stats *udp; /* UDP ASSOCIATE's counters, or NULL */
};

/* Adds the session to the totals and, when log is set and the info level is
 * on, writes its "session id=..." line. */
void stats_session_end(struct stats *st, const struct stats_session *s, bool log);
/* A running session's "interim id=..." line (log-interim): the same keys
 * but rep and end. */
void stats_session_interim(const struct stats_session *s);

#endif
