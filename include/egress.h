/*
 * egress: how outbound traffic leaves. The settings that a global
 * directive, a clause of a `rule` line or a clause of a `user` line may
 * give: the interface (SO_BINDTODEVICE), the source address per family (an
 * address, or a prefix that each session draws a random address from or
 * that gives each user a stable one), the firewall mark (SO_MARK), the IP
 * TOS / traffic class, TCP keepalive and the TCP user timeout. Every field
 * has an "unset" value, so the layers merge: a rule's clauses over the
 * user's over the global ones. Pure: parses words, merges, prints, and
 * computes an address from a prefix; net applies the settings to sockets.
 */
#ifndef SOCKS5D_EGRESS_H
#define SOCKS5D_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "siphash.h"

/* IFNAMSIZ: an interface name is at most 15 bytes. */
#define EGRESS_IFNAMSIZ 16
/* Bytes of randomness a drawn source address takes (an IPv6 /0 would). */
#define EGRESS_RANDOM_LEN 16

/* Limits of the kernel's TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT. */
#define EGRESS_KEEPALIVE_TIME_MAX 32767u
#define EGRESS_KEEPALIVE_PROBES_MAX 127u
/* tcp-user-timeout's ceiling: a day (the kernel takes up to INT_MAX ms). */
#define EGRESS_USER_TIMEOUT_MAX 86400000u

enum egress_source_mode {
	EGRESS_SRC_UNSET = 0,
	EGRESS_SRC_ADDR,      /* this address of the host */
	EGRESS_SRC_RANDOM,    /* each session draws an address from the prefix */
	EGRESS_SRC_HASH_USER, /* the prefix's address for the user's keyed hash */
};

struct egress_source {
	enum egress_source_mode mode;
	union sockaddr_any addr; /* port 0; the network (host bits zero) for a prefix */
	uint8_t prefix;          /* prefix length; the full length for an address */
};

/* Indexes of egress.src. */
#define EGRESS_V4 0
#define EGRESS_V6 1

struct egress {
	struct egress_source src[2];  /* [EGRESS_V4], [EGRESS_V6] */
	char ifname[EGRESS_IFNAMSIZ]; /* SO_BINDTODEVICE; "" unset */
	bool has_mark;                /* SO_MARK mark (0 included) */
	uint32_t mark;
	int tos;       /* IP_TOS / IPV6_TCLASS, 0..255; -1 unset */
	int keepalive; /* -1 unset, 0 off, 1 on with the three below */
	uint16_t keepalive_idle, keepalive_interval, keepalive_count;
	int user_timeout_ms; /* TCP_USER_TIMEOUT; -1 unset, 0 the kernel's */
};

/* Where clauses are written: a global directive (one clause a line), a
 * rule's clauses (every one), a user's (external and external-interface). */
enum egress_context {
	EGRESS_IN_GLOBAL,
	EGRESS_IN_RULE,
	EGRESS_IN_USER,
};

/* Every field unset. */
void egress_init(struct egress *e);
/* Whether no field is set. */
bool egress_is_empty(const struct egress *e);

/*
 * Parses the clause that starts at argv[0] (NULL-terminated words: the
 * clause's name, then its arguments) into e. Returns the number of words
 * it used (at least 1); 0 when argv[0] is not a clause name; -1 with a
 * message naming the clause in err: a bad value, a clause ctx does not
 * allow, or a setting e has already (a second source of one family). The
 * clauses: external ADDR | external PREFIX random|hash-user,
 * external-interface NAME, socket-mark N, ip-tos N, tcp-keepalive IDLE
 * INTERVAL COUNT | tcp-keepalive off, tcp-user-timeout MS.
 */
int egress_parse_clause(struct egress *e, enum egress_context ctx, char *const *argv, char *err,
	size_t errlen) __attribute__((warn_unused_result));
/* Whether word names a clause (any context). */
bool egress_is_clause(const char *word);

/* Fills the fields dst leaves unset from lower (a rule's over the
 * user's, then over the global ones). NULL lower: nothing. */
void egress_merge(struct egress *dst, const struct egress *lower);
/* Whether two settings agree on TCP keepalive and the user timeout (what
 * a client's socket gets from its listener unless a rule says otherwise). */
bool egress_tcp_equal(const struct egress *a, const struct egress *b);
/* Whether every field is equal. */
bool egress_equal(const struct egress *a, const struct egress *b);

/* Prints each set clause as before CLAUSE after, in clause syntax, in a
 * fixed order (`socks5d -T`; parsing the output gives e again). */
void egress_dump(const struct egress *e, FILE *out, const char *before, const char *after);

/* Whether family's source is drawn from a prefix (random or hash-user):
 * such an address need not be assigned to an interface, so the socket
 * binds with IP_FREEBIND (the prefix is routed to the host). */
bool egress_source_drawn(const struct egress *e, int family);
/*
 * The source address for family (AF_INET, AF_INET6; port 0): the address
 * itself, or one from the prefix: random takes its host bits from rnd,
 * hash-user from SipHash-2-4 of the user name (NULL: "") under key. The
 * first and, for IPv4, the last address of a prefix (the network's and its
 * broadcast, or IPv6's subnet-router anycast) are never drawn. False when
 * e has no source for family.
 */
bool egress_source(const struct egress *e, int family, const uint8_t key[SIPHASH_KEY_LEN],
	const char *user, const uint8_t rnd[EGRESS_RANDOM_LEN], union sockaddr_any *out);

#endif
