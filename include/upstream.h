/*
 * upstream: the client side of what socks5d speaks to a parent proxy, and
 * the parent's URL. SOCKS5 (with RFC 1929 passwords), SOCKS4 (4a for names)
 * and HTTP CONNECT. Pure: the handshake is a machine fed with the parent's
 * bytes, which says how many of them belong to the message it waits for
 * (so a caller that peeks never takes the target's first bytes) and what to
 * send next. The socket I/O is parent.c's.
 */
#ifndef SOCKS5D_UPSTREAM_H
#define SOCKS5D_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

enum upstream_proto {
	UPSTREAM_DIRECT, /* no parent: socks5d connects itself */
	UPSTREAM_SOCKS5,
	UPSTREAM_SOCKS4, /* SOCKS4, with the 4a extension for names */
	UPSTREAM_HTTP,   /* HTTP CONNECT (CONNECT only) */
};

/* "socks5://" + "[" + 255 + "]:" + 5 */
#define UPSTREAM_LABEL_MAX 280

/* One parent, as a rule's `via` names it. */
struct upstream {
	enum upstream_proto proto;
	uint16_t port;
	bool has_user;                  /* user given (SOCKS5 and HTTP: with a password) */
	uint8_t ulen;                   /* bytes of user */
	uint8_t plen;                   /* bytes of pass */
	char host[256];                 /* name or address literal, no brackets; NUL-terminated */
	char user[256];                 /* percent-decoded, NUL-terminated */
	char pass[256];                 /* percent-decoded, NUL-terminated */
	char label[UPSTREAM_LABEL_MAX]; /* "scheme://host:port": logs, metrics */
};

/* Parses "direct", "socks5://[user:pass@]host:port", "socks4://[user@]host:port"
 * ("socks4a://" is the same), "http://[user:pass@]host:port[/]". Host is a
 * name, an IPv4 address or a bracketed IPv6 address; user and password may
 * use %XX escapes. Returns 0, or -1 with a message in err. */
int upstream_parse(const char *s, struct upstream *u, char *err, size_t errlen);
/* The URL back, with the password as "***" (for socks5d -T). */
void upstream_format(const struct upstream *u, char *out, size_t cap);
/* Whether u can carry a SOCKS command (SOCKS_CMD_*). */
bool upstream_can(const struct upstream *u, uint8_t cmd);
const char *upstream_proto_str(enum upstream_proto p);

enum upstream_phase {
	UPSTREAM_PH_METHOD, /* SOCKS5 greeting sent: waits for the method choice */
	UPSTREAM_PH_AUTH,   /* RFC 1929 request sent: waits for its status */
	UPSTREAM_PH_REPLY,  /* request sent: waits for the (first) reply */
	UPSTREAM_PH_SECOND, /* BIND: the first reply came: waits for the second */
	UPSTREAM_PH_DONE,   /* answered or failed: see result */
};

/* What a handshake came to. */
struct upstream_result {
	uint8_t rep;           /* for the client: a SOCKS5 REP */
	bool parent_failed;    /* the parent failed (not the target): try the next */
	const char *why;       /* for the log: what went wrong, NULL on success */
	int http_status;       /* HTTP: the status code; else 0 */
	struct socks_addr bnd; /* BND of the last reply (SOCKS5, SOCKS4); atyp 0: none */
};

/* The longest message we send (an HTTP CONNECT with a Basic password) and
 * the longest we take (an HTTP response head). */
#define UPSTREAM_OUT_MAX 1400
#define UPSTREAM_IN_MAX 2048

struct upstream_hs {
	const struct upstream *u;
	uint8_t cmd;
	enum upstream_phase phase;
	struct socks_addr dst;
	struct upstream_result res;
	size_t out_len; /* bytes of out not yet taken by the caller */
	size_t in_len;  /* bytes of the current message so far */
	uint8_t out[UPSTREAM_OUT_MAX];
	uint8_t in[UPSTREAM_IN_MAX];
};

/* Starts a handshake asking u for cmd to dst; the first message is queued
 * in out. Returns 0, or -1 when u cannot express the request (res.rep says
 * how to answer the client: an IPv6 target for SOCKS4, a name HTTP cannot
 * carry). u must outlive the handshake. */
int upstream_hs_start(struct upstream_hs *h, const struct upstream *u, uint8_t cmd,
	const struct socks_addr *dst) __attribute__((warn_unused_result));

enum upstream_feed {
	UPSTREAM_FEED_MORE,   /* the message is not complete: feed more */
	UPSTREAM_FEED_STEP,   /* a message was taken: phase moved, out may hold the next */
	UPSTREAM_FEED_DONE,   /* the final reply: res says what it was */
	UPSTREAM_FEED_FAILED, /* the parent failed or broke the protocol: res says */
};

/* Feeds the parent's bytes p[0..len). *taken: how many of them belong to
 * the message waited for (the rest are the next message's or the target's:
 * a caller that peeked leaves them in the socket). */
enum upstream_feed upstream_hs_feed(struct upstream_hs *h, const uint8_t *p, size_t len,
	size_t *taken);
/* The parent closed before the handshake ended. */
void upstream_hs_eof(struct upstream_hs *h);
/* The caller sent n bytes of out. */
void upstream_hs_sent(struct upstream_hs *h, size_t n);

#endif
