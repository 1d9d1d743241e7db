/*
 * stats: counting and logging the end of a session. The line's keys are
 * the ones README and socks5d(8) document: id, proto, client, user, cmd,
 * target, rep, up, down (and the datagram counts for UDP), duration, end.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "proto.h"

static void
stats_add_udp(struct stats *st, const struct udpassoc_stats *u)
{
	st->udp_dgrams_up += u->dgrams_up;
	st->udp_dgrams_down += u->dgrams_down;
	for (int r = 0; r < UDPASSOC_DROP_REASONS; r++)
		st->udp_dropped[r] += u->dropped[r];
}

/* REP as the client saw it: "0x05" for SOCKS5, 90/91 for SOCKS4. */
static const char *
stats_format_rep(const struct stats_session *s, char *out, size_t cap)
{
	if (s->rep == STATS_REP_NONE)
		snprintf(out, cap, "-");
	else if (s->version == SOCKS4_VERSION)
		snprintf(out, cap, "%u",
			(unsigned)(s->rep == SOCKS_REP_SUCCEEDED ? SOCKS4_REP_GRANTED
								 : SOCKS4_REP_REJECTED));
	else
		snprintf(out, cap, "0x%02x", s->rep);
	return out;
}

/* The line's keys from client to duration: "proto=... duration=N.NNNs",
 * with rep= for a line at the end. */
static void
stats_log_line(const char *what, const struct stats_session *s, const char *tail)
{
	char peer[ADDR_STRLEN], rep[16] = "", extra[160] = "", user[LOG_ESCAPED_SIZE(255)] = "-";
	uint64_t dropped = 0;

	/* The target is escaped already (proto_addr_format). */
	if (s->user)
		log_escape(s->user, strlen(s->user), user, sizeof(user));
	for (int r = 0; s->udp && r < UDPASSOC_DROP_REASONS; r++)
		dropped += s->udp->dropped[r];
	if (s->udp)
		snprintf(extra, sizeof(extra),
			" dgrams_up=%" PRIu64 " dgrams_down=%" PRIu64 " dropped=%" PRIu64,
			s->udp->dgrams_up, s->udp->dgrams_down, dropped);
	if (tail) {
		char r[8];
		snprintf(rep, sizeof(rep), " rep=%s", stats_format_rep(s, r, sizeof(r)));
	}
	log_info("%s id=%" PRIu64 " proto=socks%u client=%s user=%s cmd=%s target=%s%s up=%" PRIu64
		 " down=%" PRIu64 "%s duration=%" PRIu64 ".%03" PRIu64 "s%s",
		what, s->id, s->version, addr_format(s->client, peer, sizeof(peer)), user,
		s->cmd ? proto_cmd_str(s->cmd) : "-", s->target ? s->target : "-", rep, s->up,
		s->down, extra, s->duration_ms / 1000, s->duration_ms % 1000, tail ? tail : "");
}

void
stats_session_end(struct stats *st, const struct stats_session *s, bool log)
{
	char end[300];

	if (s->udp)
		stats_add_udp(st, s->udp);
	st->bytes_up += s->up;
	st->bytes_down += s->down;
	st->sessions[s->cmd < STATS_CMD_SLOTS ? s->cmd : 0]
		    [s->rep < STATS_REP_NONE ? s->rep : STATS_REP_NONE]++;
	if (!log || !log_enabled(LOG_LVL_INFO))
		return;
	snprintf(end, sizeof(end), " end=\"%s\"", s->end ? s->end : "-");
	stats_log_line("session", s, end);
}

void
stats_session_interim(const struct stats_session *s)
{
	if (log_enabled(LOG_LVL_INFO))
		stats_log_line("interim", s, NULL);
}
