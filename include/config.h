/*
 * config: socks5d.conf text -> struct config. Line-based "keyword args...",
 * '#' comments, double quotes for arguments with spaces. Every error is
 * reported as "FILE:LINE: message". Parsing from a string needs no files
 * (except what users-file names).
 */
#ifndef SOCKS5D_CONFIG_H
#define SOCKS5D_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "acl.h"
#include "addr.h"
#include "egress.h"
#include "limitset.h"
#include "log.h"

#define CONFIG_DEFAULT_PATH "/etc/socks5d/socks5d.conf"
#define CONFIG_DEFAULT_LISTEN "127.0.0.1:1080"
#define CONFIG_MAX_LISTEN 32
#define CONFIG_MAX_NAMESERVERS 8
#define CONFIG_MAX_WORKERS 64
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/socks5d"
/* A unix socket path (sun_path) with room for a worker's ".NN". */
#define CONFIG_CONTROL_MAX 100
#define CONFIG_DEFAULT_BACKLOG 4096
/* tcp-keepalive's default: see config_fill_defaults. */
#define CONFIG_KEEPALIVE_IDLE 120
#define CONFIG_KEEPALIVE_INTERVAL 30
#define CONFIG_KEEPALIVE_COUNT 4

struct auth_table;

/* A user's own outbound settings (`user NAME SECRET external ADDR
 * external-interface NAME`). */
struct config_user_egress {
	char name[256];
	int line;
	struct egress egress;
};

struct config_listen {
	union sockaddr_any addr;
	int line;            /* 0 for the built-in default */
	bool proxy_protocol; /* a PROXY v1/v2 header precedes SOCKS */
	unsigned backlog;    /* listen(2)'s backlog */
};

#define CONFIG_MAX_PROXY_FROM 32
#define CONFIG_MAX_AUTH_EXEMPT 32

struct config {
	unsigned refs;  /* sessions keep the config they started with */
	char name[256]; /* file name used in messages */

	struct config_listen listen[CONFIG_MAX_LISTEN];
	size_t nlisten;

	uint8_t methods[2]; /* SOCKS_METHOD_*, in preference order */
	size_t nmethods;

	struct auth_table *users;  /* never NULL; may be empty */
	char users_file[PATH_MAX]; /* users-file's path, resolved; "" without one */
	bool users_file_watch;     /* users-file ... watch: reload when it changes */
	struct acl *acl;           /* client and request rules; never NULL */

	unsigned max_connections;        /* per process; 0 = no limit */
	unsigned max_connections_per_ip; /* 0 = no limit */
	unsigned max_sessions_per_user;  /* 0 = no limit */
	unsigned max_lookups;            /* name lookups in flight at once; 0 = no limit */
	unsigned auth_fail_limit;        /* failures that lock an IP out; 0 = never */
	unsigned auth_fail_window;       /* seconds the failures are counted over */
	unsigned auth_lockout;           /* seconds an IP stays locked out */
	unsigned auth_workers;           /* password hasher processes (per worker) */
	unsigned ipv6_prefix;            /* IPv6 clients count by this prefix (limits) */
	unsigned parent_down_after;      /* failures in a row that mark a parent down; 0 never */
	unsigned parent_down_for;        /* seconds a parent stays marked down */
	struct acl_cidr auth_exempt[CONFIG_MAX_AUTH_EXEMPT]; /* never locked out */
	size_t nauth_exempt;
	char run_as_user[64];    /* "" = stay as started */
	char run_as_group[64];   /* "" = the user's primary group */
	size_t nplaintext_users; /* users whose secret is plain text (warned) */

	enum log_level log_level;
	int log_syslog;            /* 1 for "log syslog": syslog(3) instead of stderr */
	unsigned shutdown_timeout; /* seconds sessions may finish after SIGTERM */
	unsigned workers;          /* worker processes (1: no supervisor) */
	unsigned relay_buffer;     /* bytes per direction while data is in flight */
	int relay_splice;          /* bulk directions splice: -1 unset, 0 off, 1 on */

	unsigned timeout_handshake; /* seconds, whole greeting+auth+request */
	unsigned timeout_connect;   /* seconds, outbound connect incl. lookups */
	unsigned timeout_idle;      /* seconds of relay silence; 0 = never */
	unsigned timeout_udp;       /* seconds of UDP ASSOCIATE silence; 0 = never */
	unsigned timeout_bind;      /* seconds a BIND waits for its peer */

	union sockaddr_any nameservers[CONFIG_MAX_NAMESERVERS];
	size_t nnameservers; /* 0: use /etc/resolv.conf */
	/* AF_INET or AF_INET6; AF_UNSPEC when not set: the resolver's
	 * answers IPv4 first, Happy Eyeballs IPv6 first (RFC 8305 §4). */
	int resolve_prefer;
	unsigned dns_cache_size;    /* entries */
	unsigned dns_cache_max_ttl; /* seconds */
	unsigned timeout_dns;       /* seconds per query try; 0: resolv.conf's, else 5 */
	unsigned dns_attempts;      /* rounds over the nameservers; 0: resolv.conf's, else 2 */

	uint16_t udp_port_lo, udp_port_hi;   /* 0,0: any port */
	uint16_t bind_port_lo, bind_port_hi; /* 0,0: any port */

	bool socks4;    /* SOCKS4/4a accepted on the same listeners */
	int socks4_opt; /* as written: -1 unset, 0 off, 1 on */

	struct acl_cidr proxy_from[CONFIG_MAX_PROXY_FROM]; /* who may send PROXY headers */
	size_t nproxy_from;

	bool has_metrics;
	union sockaddr_any metrics; /* Prometheus endpoint */

	bool has_announce4, has_announce6;
	union sockaddr_any announce4; /* address written in BIND/UDP replies (NAT) */
	union sockaddr_any announce6;

	struct config_user_egress *user_egress; /* users' own outbound settings */
	size_t nuser_egress;

	/* How traffic leaves unless a rule or the user says otherwise:
	 * source addresses (also where BIND listens), interface, mark, TOS,
	 * TCP keepalive (on by default) and user timeout. */
	struct egress egress;
	int egress_interface_line;  /* line of external-interface, 0: none */
	int egress_mark_line;       /* line of socket-mark, 0: none */
	unsigned happy_eyeballs_ms; /* Connection Attempt Delay; 0: one at a time */

	struct limitset *limits;          /* limit lines, rule rates; never NULL */
	char state_dir[PATH_MAX];         /* where quota counters are kept */
	char control[CONFIG_CONTROL_MAX]; /* control socket; "" = none */
	unsigned log_interim;             /* seconds between interim lines; 0 = none */
	unsigned metrics_users;           /* users exported with series of their own */
};

/* The built-in default: listen 127.0.0.1:1080, auth none, default timeouts. */
struct config *config_new_default(void);
/* Parses text; name is used in messages. Returns 0 and *out (refs = 1), or -1
 * with "NAME:LINE: message" in err. */
int config_parse_string(const char *text, const char *name, struct config **out, char *err,
	size_t errlen);
/* config_parse_string on the file's text, named path in messages; also
 * -1 with "PATH: why" when it cannot be read or is over 16 MiB, and with
 * "PATH:LINE: NUL byte in line" for a NUL byte. */
int config_load_file(const char *path, struct config **out, char *err, size_t errlen);
/* What the daemon runs on: the file at path; or, when the path was not
 * given explicitly and does not exist, the built-in default. NULL with the
 * message in err on failure. */
struct config *config_load(const char *path, bool explicit_path, char *err, size_t errlen);
/* Another reference to c (returned); each is dropped with config_unref,
 * which frees c, its users and rules with the last one. NULL: no-op. */
struct config *config_ref(struct config *c);
void config_unref(struct config *c);
/* The outbound settings of a user's line, or NULL (none; user NULL). */
const struct egress *config_user_egress(const struct config *c, const char *user);
/* Calls fn for every set of outbound settings written in c (the global
 * ones, each user's, each rule's) with the line to name in a message
 * (global: the external-interface line, else the socket-mark line, else
 * 0). For the start's checks of interfaces and permissions. */
void config_each_egress(const struct config *c,
	void (*fn)(const struct egress *e, int line, void *arg), void *arg);
/* Whether clients may get in without a password (auth includes none; with
 * no auth line: when there are no users). */
bool config_accepts_no_auth(const struct config *c);
/* Whether users are defined but no method asks for a password ('auth
 * none' with users): their passwords are never checked. socks5d -t and the
 * start warn about it. */
bool config_users_unused(const struct config *c);
/* Prints the effective configuration in config-file syntax (socks5d -T). */
void config_dump(const struct config *c, FILE *out);
/* NULL-terminated list of every keyword the parser accepts. */
const char *const *config_keywords(void);

#endif
