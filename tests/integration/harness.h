/*
 * harness: what the integration tests share. Starts and stops the real
 * daemon (socks5d, or microsocks with IT_SERVER=microsocks to check the
 * harness itself), runs target servers in forked children on loopback, and
 * gives tests a raw SOCKS5 client whose every socket operation is bounded.
 * The tests build protocol bytes by hand; helpers here only open "a normal
 * session" for the tests whose subject is something else.
 */
#ifndef SOCKS5D_IT_HARNESS_H
#define SOCKS5D_IT_HARNESS_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#define IT_IO_TIMEOUT_MS 5000 /* default bound of one client read */
#define IT_SOURCE_BYTES (20u << 20)
#define IT_SOURCE_SEED 0x5eed50c5d00dULL

/* ---- data: xorshift bytes and a 64-bit FNV-1a hash -------------------- */

struct it_hash {
	uint64_t h; /* FNV-1a state */
	uint64_t n; /* bytes hashed */
};

void it_hash_init(struct it_hash *hs);
void it_hash_update(struct it_hash *hs, const void *p, size_t n);
/* Fills p with the next n bytes of the xorshift64 stream in *state (never 0). */
void it_fill(void *p, size_t n, uint64_t *state);
/* Hash of the first n bytes of the stream seeded with seed. */
uint64_t it_stream_hash(uint64_t seed, size_t n);
void it_put_be64(uint8_t *p, uint64_t v);
uint64_t it_get_be64(const uint8_t *p);
uint64_t it_now_ms(void); /* CLOCK_MONOTONIC */
uint64_t it_cpu_ms(void); /* this thread's CPU time */
void it_sleep_ms(unsigned ms);

/* ---- the server under test --------------------------------------------- */

/* What the server can be asked to do; socks5d has all of them. */
enum it_cap {
	IT_CAP_BND_ADDR = 1 << 0,       /* success reply carries the real BND */
	IT_CAP_AUTH_BOTH = 1 << 1,      /* "auth password none" */
	IT_CAP_PARTIAL_READS = 1 << 2,  /* messages split over segments / pipelined */
	IT_CAP_HALF_CLOSE = 1 << 3,     /* relays a FIN and keeps the other way open */
	IT_CAP_TIMEOUTS = 1 << 4,       /* "timeout handshake N" */
	IT_CAP_SILENT_VERSION = 1 << 5, /* bad VER: close without sending */
	IT_CAP_CLEAN_EXIT = 1 << 6,     /* exit status 0 on SIGTERM */
	IT_CAP_BIND = 1 << 7,           /* BIND command */
	IT_CAP_UDP = 1 << 8,            /* UDP ASSOCIATE */
	IT_CAP_SOCKS4 = 1 << 9,         /* SOCKS4/4a on the same port */
	IT_CAP_RESOLVER = 1 << 10,      /* own resolver, asking "nameserver" servers */
};

bool it_is_microsocks(void);
bool it_server_has(enum it_cap cap);
/* skip()s the current test when the server under test lacks cap. */
void it_require(enum it_cap cap);
/* Checks SOCKS5D / IT_SERVER; returns -1 with a message when unusable. */
int it_server_init(void);
bool it_have_ipv6(void);
/* IT_SLOW is set (make memcheck: the daemon runs under valgrind, some
 * thirty times slower): groups whose subject is CPU-heavy work skip. */
bool it_slow(void);
/* The host's first non-loopback IPv4 address (port 0); false when none. */
bool it_host_ipv4(struct sockaddr_in *out);
/* Raises RLIMIT_NOFILE's soft limit to the hard limit (inherited by the daemon). */
void it_raise_nofile(void);

struct it_daemon {
	pid_t pid;     /* socks5d, or microsocks on 127.0.0.1 */
	pid_t pid6;    /* microsocks on [::1] (it listens on one address) */
	uint16_t port; /* same port on 127.0.0.1 and [::1] */
	bool ipv6;     /* listening on [::1] too */
	bool keep;     /* keep dir (IT_KEEP set, or something went wrong) */
	char dir[256]; /* temp dir holding the config and the log */
	char conf[300];
	char log[300];
};

/* Writes the config (listen lines + config_lines), starts the server on a free
 * port and waits (bounded) until it accepts on every listener. Returns 0, 1
 * when microsocks cannot express config_lines, -1 on failure (printed). */
int it_daemon_start(struct it_daemon *d, const char *config_lines);
/* socks5d -t on text, written to a fresh file named t.conf (so messages
 * read "t.conf:LINE: ..."): the exit status, stdout and stderr in out. */
int it_check_config(const char *text, char *out, size_t cap);
/* SIGTERM, bounded wait, SIGKILL as last resort. Returns 0 when the server
 * exited cleanly (status 0; microsocks: killed by SIGTERM), -1 otherwise. */
int it_daemon_stop(struct it_daemon *d);
/* Whether the server process is still running (reaps it if not). */
bool it_daemon_running(struct it_daemon *d);
void it_daemon_log_tail(const struct it_daemon *d, int lines);
/* Whether the server's log so far contains needle. */
bool it_daemon_log_contains(const struct it_daemon *d, const char *needle);

/* ---- group fixture ----------------------------------------------------- */

struct it_fixture {
	struct it_daemon d;
	const char *user; /* credentials of a normal session; NULL: method 00 */
	const char *pass;
	bool unsupported; /* microsocks cannot run this group's config */
	bool started;
};

/* For a cmocka group setup: starts a daemon with config and remembers how a
 * normal session authenticates (user NULL: no auth). */
int it_fixture_start(void **state, const char *config, const char *user, const char *pass);
/* it_fixture_start for a group whose subject is cap: when the server lacks
 * it, no server is started and the group's tests skip themselves. */
int it_fixture_start_for(void **state, enum it_cap cap, const char *config, const char *user,
	const char *pass);
/* Failures cmocka does not count itself (group teardown); main() adds them. */
extern int it_harness_failures;

/* For a cmocka group teardown: stops the daemon; fails if it did not exit 0. */
int it_fixture_stop(void **state);
/* For a test: the fixture; skip()s when the group cannot run on this server. */
struct it_fixture *it_fx(void **state);
/* For a test teardown: a normal session through the daemon must still work. */
int it_check_alive(void **state);
/* A test followed by that check: whatever the test sent, the daemon lives on. */
#define IT_TEST(f) cmocka_unit_test_teardown(f, it_check_alive)

/* ---- targets ----------------------------------------------------------- */

enum it_target_kind {
	IT_TARGET_ECHO,      /* echoes until EOF */
	IT_TARGET_PEER,      /* sends the peer address as ATYP ADDR PORT, then FIN */
	IT_TARGET_SINK,      /* reads BE64 length + that many bytes; replies count+hash */
	IT_TARGET_SOURCE,    /* sends IT_SOURCE_BYTES of the IT_SOURCE_SEED stream, closes */
	IT_TARGET_EOF_REPLY, /* reads until EOF, then replies count+hash and closes */
	IT_TARGET_HTTP,      /* HTTP/1.0 200 with IT_HTTP_BYTES of IT_HTTP_SEED, closes */
};

struct it_target {
	pid_t pid;
	int family; /* AF_INET (127.0.0.1) or AF_INET6 (::1) */
	uint16_t port;
};

struct it_targets {
	struct it_target echo4, echo6, peer4, peer6, sink4, source4, eof_reply4;
	uint16_t closed_port4; /* bound, never listening: connect gets ECONNREFUSED */
	int closed_fd;
	/* UDP echo (each datagram back to its sender, unchanged) on 127.0.0.1
	 * and ::1; HTTP/1.0 server on 127.0.0.1 answering any request with
	 * IT_HTTP_BYTES of the IT_HTTP_SEED stream (for curl). */
	struct it_target udp_echo4, udp_echo6, http4;
};

#define IT_HTTP_BYTES (1u << 20)
#define IT_HTTP_SEED 0x477470ULL

extern struct it_targets it_tg;

int it_targets_start(struct it_targets *tg);
void it_targets_stop(struct it_targets *tg);

/* ---- client ------------------------------------------------------------ */

/* Connects to the loopback address of family (127.0.0.1 / ::1) on port,
 * bounded; TCP_NODELAY and 10 s send/receive timeouts as a backstop.
 * Returns the fd or -1. */
int it_connect(int family, uint16_t port);
/* Closes a descriptor from it_connect. Use it instead of close(): a test
 * that fails half-way leaves its sockets registered, and the next teardown
 * (it_check_alive) closes them with it_close_leftovers(). */
void it_close(int fd);
void it_close_leftovers(void);
/* Sends everything (MSG_NOSIGNAL). Returns 0 or -1 with errno. */
int it_send_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes within timeout_ms. Returns how many were read: n, or
 * fewer on EOF (errno 0), error (errno) or timeout (errno ETIMEDOUT). */
size_t it_recv_exact(int fd, void *p, size_t n, int timeout_ms);

enum it_close {
	IT_CLOSE_EOF,     /* read returned 0 */
	IT_CLOSE_RST,     /* ECONNRESET */
	IT_CLOSE_TIMEOUT, /* still open at the deadline */
	IT_CLOSE_DATA,    /* bytes arrived instead */
};
/* Waits up to timeout_ms for the peer to close; never consumes more than one
 * byte. */
enum it_close it_wait_close(int fd, int timeout_ms);
const char *it_close_str(enum it_close c);

/* A SOCKS5 reply (RFC 1928 §6), parsed at its variable length. */
struct it_reply {
	uint8_t raw[4 + 1 + 255 + 2];
	size_t len;
	uint8_t rep;
	uint8_t atyp;
	size_t addr_len;     /* 4, 16, or the domain length */
	const uint8_t *addr; /* into raw */
	uint16_t port;
};

/* Reads one reply. Returns 0, or -1 with a reason in err. */
int it_read_reply(int fd, struct it_reply *r, int timeout_ms, char *err, size_t errlen);
/* ATYP ADDR PORT of a loopback target (7 or 19 bytes). Returns the length. */
size_t it_target_addr(const struct it_target *t, uint8_t *out);
/* Connects to the daemon's listener of family, negotiates as the fixture
 * says (method 00, or 02 with its user) and CONNECTs to t. Returns the fd
 * with the tunnel open, or -1 with a reason in err. */
int it_session_open(const struct it_fixture *fx, int family, const struct it_target *t, char *err,
	size_t errlen);
/* Sends n bytes of the seed stream and expects them back. 0, or -1 with err. */
int it_echo_check(int fd, size_t n, uint64_t seed, char *err, size_t errlen);

/* Asserting wrappers for tests: on failure they print what differed and
 * fail at the caller's line (hence the macros). */
int it_open_tunnel_at(const struct it_fixture *fx, int family, const struct it_target *t,
	const char *file, int line);
void it_expect_echo_at(int fd, size_t n, uint64_t seed, const char *file, int line);
void it_expect_bytes_at(int fd, const void *want, size_t n, const char *file, int line);
void it_expect_close_at(int fd, int timeout_ms, const char *file, int line);
void it_send_bytes_at(int fd, const void *p, size_t n, const char *file, int line);
void it_send_slowly_at(int fd, const void *p, size_t n, const char *file, int line);
void it_assert_mem_at(const void *got, const void *want, size_t n, const char *what,
	const char *file, int line);

/* Opens a session (it_session_open) or fails the test. */
#define it_open_tunnel(fx, family, t) it_open_tunnel_at(fx, family, t, __FILE__, __LINE__)
/* Sends n bytes of the seed stream and expects them back unaltered. */
#define it_expect_echo(fd, n, seed) it_expect_echo_at(fd, n, seed, __FILE__, __LINE__)
/* Expects exactly these n (<= 64) bytes next. */
#define it_expect_bytes(fd, want, n) it_expect_bytes_at(fd, want, n, __FILE__, __LINE__)
/* Expects EOF or reset within timeout_ms, with no bytes before it. */
#define it_expect_close(fd, ms) it_expect_close_at(fd, ms, __FILE__, __LINE__)
#define it_send_bytes(fd, p, n) it_send_bytes_at(fd, p, n, __FILE__, __LINE__)
/* One byte per send() with a short pause, so each is its own segment. */
#define it_send_slowly(fd, p, n) it_send_slowly_at(fd, p, n, __FILE__, __LINE__)
#define it_assert_mem(got, want, n, what) it_assert_mem_at(got, want, n, what, __FILE__, __LINE__)

/* ---- more client helpers: addresses, UDP, BIND peers, programs ---------- */

/* Fills ss with the numeric address ip ("127.0.0.2", "::1") and port.
 * Returns 0, or -1 when ip is not numeric. */
int it_sockaddr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
/* The local port of a socket, 0 on error. */
uint16_t it_local_port(int fd);
/* Connects to ip:port from a socket bound to src_ip (NULL: the kernel's
 * choice), bounded like it_connect. Returns the fd or -1 with errno
 * (ECONNREFUSED: nothing listens there). Close it with it_close(); one a
 * failed test leaves open is closed by the next it_check_alive. */
int it_connect_addr(const char *ip, uint16_t port, const char *src_ip);
/* A UDP socket bound to ip:port (port 0: any), with 4 MiB buffers; closed
 * like it_connect_addr's. Returns the fd or -1 with errno. */
int it_udp_socket(const char *ip, uint16_t port);
/* Sends one datagram to ip:port. Returns 0 or -1 with errno. */
int it_udp_send(int fd, const char *ip, uint16_t port, const void *p, size_t n);
/* Receives one datagram within timeout_ms. Returns its length (the whole
 * length, even when more than cap) or -1 with errno (ETIMEDOUT). */
long it_udp_recv(int fd, void *p, size_t cap, int timeout_ms);

/* Sends n bytes of the seed_a stream from fd_a to fd_b and n bytes of the
 * seed_b stream from fd_b to fd_a at the same time (neither side can stall
 * the other), within timeout_ms; compares the hashes of what arrived.
 * 0, or -1 with a reason in err. */
int it_exchange(int fd_a, int fd_b, size_t n, uint64_t seed_a, uint64_t seed_b, int timeout_ms,
	char *err, size_t errlen);

/* Connects to the daemon's listener of family and negotiates as the fixture
 * says; returns the fd ready for a request, or fails the test. */
int it_greet_at(const struct it_fixture *fx, int family, const char *file, int line);
#define it_greet(fx, family) it_greet_at(fx, family, __FILE__, __LINE__)
/* Reads one SOCKS5 reply into *r or fails the test. */
void it_expect_reply_at(int fd, struct it_reply *r, int timeout_ms, const char *file, int line);
#define it_expect_reply(fd, r, ms) it_expect_reply_at(fd, r, ms, __FILE__, __LINE__)

/* Runs argv[0] (a path) with stdin from /dev/null, stdout hashed into
 * *out (when out is not NULL) and stderr inherited, for at most
 * timeout_ms (then SIGKILL). Returns the exit status (0-255), 128+signal
 * when killed by a signal, -1 when it could not run or timed out. */
int it_run_program(char *const argv[], int timeout_ms, struct it_hash *out);
/* Finds an executable named name on PATH; fills path (for execv) and
 * returns true when there is one. */
bool it_find_program(const char *name, char *path, size_t cap);

/* ---- fake DNS server (fake_dns.c) ---------------------------------------- */

/* What the fake server does with the queries for one name. Unknown names
 * are answered REFUSED. */
struct it_dns_rule {
	char name[64]; /* compared case-insensitively, no final dot */
	bool has_a;    /* answer A queries with a */
	uint8_t a[4];
	bool has_aaaa; /* answer AAAA queries with aaaa */
	uint8_t aaaa[16];
	bool nxdomain;         /* RCODE 3 (with an SOA) to both types */
	unsigned delay_ms;     /* the (real) answer leaves this long after the query */
	bool spoof_port_first; /* at once: a wrong address, right id, from another port */
	bool spoof_id_first;   /* at once: a wrong address from the right port, wrong id */
	bool truncate_udp;     /* UDP: TC=1 and no records; TCP: the full answer */
	uint32_t ttl;          /* of records and of the SOA (0: 300) */
};

/* A type without an address answers NOERROR + SOA (NODATA, cacheable). The
 * wrong address of a spoofed answer is IT_DNS_SPOOF_A / ::99. */
#define IT_DNS_SPOOF_A        \
	{                     \
		127, 0, 0, 99 \
	}

struct it_dns_counts {
	unsigned udp_a, udp_aaaa, tcp_a, tcp_aaaa; /* queries received */
};

struct it_dns {
	pid_t pid;
	uint16_t port; /* UDP and TCP on 127.0.0.1 (or it_dns_start_at's address) */
	int ctl;       /* control socket to the server process */
};

/* Starts the server in a forked child. Returns 0 or -1 (printed). */
int it_dns_start(struct it_dns *dns);
/* The same on the IPv4 address ip of the current network namespace, its
 * sockets bound to device when not NULL (issue 19: a nameserver that
 * only answers what arrives through one interface). */
int it_dns_start_at(struct it_dns *dns, const char *ip, const char *device);
void it_dns_stop(struct it_dns *dns);
/* Adds or replaces the rule for rule->name (its counts start at 0). */
int it_dns_set(struct it_dns *dns, const struct it_dns_rule *rule);
/* Queries received so far for name. Returns 0 or -1. */
int it_dns_counts(struct it_dns *dns, const char *name, struct it_dns_counts *out);

/* ---- the test groups, one runner per file ------------------------------ */

int it_run_connect_tests(void);
int it_run_auth_tests(void);
int it_run_handshake_tests(void);
int it_run_relay_tests(void);
int it_run_concurrency_tests(void);
int it_run_timeout_tests(void);
int it_run_lifecycle_tests(void);
int it_run_bind_tests(void);
int it_run_udp_tests(void);
int it_run_dns_tests(void);
int it_run_socks4_tests(void);
int it_run_systemd_tests(void);
int it_run_fault_tests(void);
int it_run_access_tests(void);
int it_run_scale_tests(void);
int it_run_hardening_tests(void);
int it_run_parent_tests(void);
int it_run_userswatch_tests(void);
int it_run_shaping_tests(void);
int it_run_egress_tests(void);

#endif
