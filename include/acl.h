/*
 * acl: access rules, first match wins. Client rules decide at accept time
 * from the client address alone; request rules decide per request (and per
 * UDP destination, per BIND peer) from client, user, command, destination
 * name and/or address, and port. Pure: no I/O, no logging, no globals.
 */
#ifndef SOCKS5D_ACL_H
#define SOCKS5D_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "egress.h"
#include "upstream.h"

struct acl;

enum acl_verdict {
	ACL_ALLOW = 0,
	ACL_DENY,
	ACL_UNDECIDED, /* a rule needs the destination address, which is not known yet */
};

#define ACL_CMD_CONNECT 0x1u
#define ACL_CMD_BIND 0x2u
#define ACL_CMD_UDP 0x4u

/* What a request rule is checked against. */
struct acl_request {
	const union sockaddr_any *client;   /* client address (IPv4-mapped allowed) */
	const char *user;                   /* authenticated user or NULL */
	unsigned cmd;                       /* one ACL_CMD_* */
	const char *dst_name;               /* requested domain name, or NULL */
	const union sockaddr_any *dst_addr; /* resolved/requested address, or NULL */
	uint16_t port;                      /* destination port */
	/* No destination at all yet: a UDP ASSOCIATE request, whose DST is the
	 * client's own endpoint and whose destinations come per datagram. A
	 * rule that selects by `to` or `port` cannot decide it: such an allow
	 * rule makes the result ACL_UNDECIDED, such a deny rule is passed over
	 * (it refuses only some destinations); the other rules decide as ever. */
	bool dst_unknown;
};

/* An allowing rule's `via`: where what it allows leaves, in failover order. */
#define ACL_VIA_MAX 8
struct acl_via {
	size_t n;
	bool resolve_local; /* `resolve local`: names are resolved here, parents get addresses */
	struct upstream hop[ACL_VIA_MAX];
};

struct acl_result {
	enum acl_verdict verdict;
	int line;                  /* config line of the deciding rule, 0 = default */
	bool to_addr;              /* the deciding rule's `to` has a network holding the address */
	const struct acl_via *via; /* ALLOW: the rule's via; NULL: direct */
	const struct egress *egress; /* an allowing rule's outbound clauses, or NULL */
};

/* An empty rule set (allows everything), or NULL when out of memory. */
struct acl *acl_new(void);
/* Frees a and every rule; NULL is a no-op. */
void acl_free(struct acl *a);

/* Parse and append a rule from its arguments (the words after the keyword),
 * e.g. {"allow", "10.0.0.0/8", "::1", NULL} for `client allow ...` or
 * {"deny", "to", "*.example.com", "port", "25", NULL} for `rule deny ...`.
 * A request rule may end with clauses that say how what it allows leaves:
 * `via PARENT[,PARENT...]` and `resolve local|parent`; an allow rule may
 * also have egress's clauses (`external-interface wg0`, `socket-mark 7`...)
 * anywhere among its selectors. Returns 0, or -1 with a message (no
 * file/line prefix) in err. */
int acl_add_client_rule(struct acl *a, char **argv, int line, char *err, size_t errlen);
int acl_add_request_rule(struct acl *a, char **argv, int line, char *err, size_t errlen);
/* How many client (request) rules were added. */
size_t acl_client_rule_count(const struct acl *a);
size_t acl_request_rule_count(const struct acl *a);
/* The outbound clauses of request rule i (config order) and its line, or
 * NULL when it has none. */
const struct egress *acl_request_rule_egress(const struct acl *a, size_t i, int *line);

/* Client rules: first match wins; no match (or no rules) allows. */
struct acl_result acl_check_client(const struct acl *a, const union sockaddr_any *client);
/* Request rules: first match wins; no match allows (verdict ALLOW, line 0).
 * With dst_addr NULL, a rule whose destination is a CIDR cannot be decided:
 * the result is ACL_UNDECIDED (check again once the address is known); with
 * dst_unknown, see there. */
struct acl_result acl_check_request(const struct acl *a, const struct acl_request *r);

/* Prints the rules back in config syntax (for socks5d -T). */
void acl_dump(const struct acl *a, FILE *out);
/* acl_dump, calling after(line, out, arg) at the end of each request rule's
 * line, before its newline (what the config adds to a rule: its rate). */
typedef void (*acl_dump_after_cb)(int line, FILE *out, void *arg);
void acl_dump_with(const struct acl *a, FILE *out, acl_dump_after_cb after, void *arg);

/* CIDR helpers, exposed for tests and the built-in protections. "all" is
 * accepted as 0.0.0.0/0 plus ::/0; IPv4-mapped IPv6 addresses match IPv4
 * prefixes. Returns 0 or -1. */
struct acl_cidr {
	bool any;         /* "all" */
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network byte order, masked */
	uint8_t prefix;   /* 0..32 or 0..128 */
};
int acl_parse_cidr(const char *s, struct acl_cidr *out);
bool acl_cidr_match(const struct acl_cidr *c, const union sockaddr_any *a);
/* Domain selector match: "example.com" matches exactly (case-insensitive,
 * a trailing dot ignored); "*.example.com" matches any name below it but not
 * example.com itself nor badexample.com. */
bool acl_domain_match(const char *pattern, const char *name);

#endif
