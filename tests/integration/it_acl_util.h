/*
 * it_acl_util: client helpers of the access-control and scaling tests
 * (test_access.c, test_scale.c) on top of harness.h: a client from a chosen
 * loopback source address, optionally speaking a PROXY protocol header
 * first, so one test process can be several clients (127.0.0.2, 127.0.0.3)
 * or claim a non-loopback one (192.0.2.7) through a proxy-protocol
 * listener; raw requests with exact replies; log polling; spare ports for
 * the extra listeners and metrics endpoints a config names.
 */
#ifndef SOCKS5D_IT_ACL_UTIL_H
#define SOCKS5D_IT_ACL_UTIL_H

#include "harness.h"

/* A free port on 127.0.0.1, for TCP and UDP alike (below the ephemeral
 * range, so no socket binding port 0 can be given it; never one handed out
 * before in this run), 0 when none was found. */
uint16_t it_acl_free_port(void);
/* Whether port can be bound on 127.0.0.1 right now, over TCP and UDP. */
bool it_acl_port_free(uint16_t port);

/* PROXY protocol v1 line "PROXY TCP4|TCP6 src dst sport dport\r\n" into out
 * (>= 108 bytes). Returns its length. */
size_t it_acl_proxy_v1(char *out, const char *src, uint16_t sport, const char *dst, uint16_t dport);
/* PROXY protocol v2 header (PROXY command, TCP over the family of src) into
 * out (>= 52 bytes). Returns its length. */
size_t it_acl_proxy_v2(uint8_t *out, const char *src, uint16_t sport, const char *dst,
	uint16_t dport);

/* Connects to 127.0.0.1:port from src (NULL: the kernel's choice) and sends
 * hdr (hdr_len 0: nothing). Returns the fd or -1 with a reason in err. */
int it_acl_dial(const char *src, uint16_t port, const void *hdr, size_t hdr_len, char *err,
	size_t errlen);
/* Greeting (method 00 when user is NULL, else 02 and RFC 1929 with
 * user/pass), expecting success. 0, or -1 with err. */
int it_acl_auth(int fd, const char *user, const char *pass, char *err, size_t errlen);
/* Sends 05 cmd 00 addr and reads the reply. 0, or -1 with err. */
int it_acl_request(int fd, uint8_t cmd, const uint8_t *addr, size_t addr_len, struct it_reply *r,
	char *err, size_t errlen);
/* ATYP 01 ip port / ATYP 03 name port. Return the length. */
size_t it_acl_addr4(uint8_t *out, const char *ip, uint16_t port);
size_t it_acl_addr_name(uint8_t *out, const char *name, uint16_t port);

/* One client of the tests: where it comes from and how it authenticates. */
struct it_acl_client {
	const char *src; /* source address; NULL: the kernel's choice */
	uint16_t port;   /* daemon listener on 127.0.0.1 */
	const void *hdr; /* PROXY header sent first (NULL: none) */
	size_t hdr_len;
	const char *user; /* NULL: method 00 */
	const char *pass;
};

/* dial + auth + CONNECT to t with REP 00. Returns the fd or -1 with err. */
int it_acl_session(const struct it_acl_client *c, const struct it_target *t, char *err,
	size_t errlen);
/* it_acl_session or fail the test. */
int it_acl_session_at(const struct it_acl_client *c, const struct it_target *t, const char *file,
	int line);
#define it_acl_open(c, t) it_acl_session_at(c, t, __FILE__, __LINE__)
/* it_acl_session retried until it works or timeout_ms passed: for a slot
 * the daemon frees once it has seen a close. Returns the fd or -1 with the
 * last reason in err. */
int it_acl_session_retry(const struct it_acl_client *c, const struct it_target *t, int timeout_ms,
	char *err, size_t errlen);

/* Expects the reply 05 rep 00 01 0.0.0.0:0 (a refusal carries no address)
 * followed by a close. */
void it_acl_expect_refusal_at(int fd, uint8_t rep, const char *file, int line);
#define it_acl_expect_refusal(fd, rep) it_acl_expect_refusal_at(fd, rep, __FILE__, __LINE__)
/* Expects the connection closed within timeout_ms with no byte sent to us;
 * what describes the client for the message. */
void it_acl_expect_shut_at(int fd, int timeout_ms, const char *what, const char *file, int line);
#define it_acl_expect_shut(fd, ms, what) it_acl_expect_shut_at(fd, ms, what, __FILE__, __LINE__)

/* Lines of the daemon's log holding needle (-1: no log). */
int it_acl_log_count(const struct it_daemon *d, const char *needle);
/* Waits (bounded) until at least n lines hold needle. */
bool it_acl_wait_log(const struct it_daemon *d, const char *needle, int n, int timeout_ms);
/* Fails the test, with the log tail, unless a line holds needle within
 * timeout_ms. */
void it_acl_expect_log_at(const struct it_daemon *d, const char *needle, int timeout_ms,
	const char *file, int line);
#define it_acl_expect_log(d, needle, ms) it_acl_expect_log_at(d, needle, ms, __FILE__, __LINE__)

/* Number of the config line that is the index-th (from 1) line of the
 * config_lines the harness was given: it writes a comment before them and
 * its listen lines after them. */
int it_acl_conf_line(const struct it_daemon *d, int index);

/* Runs argv with stdout and stderr into out (NUL-terminated, truncated to
 * cap) for at most timeout_ms. Returns the exit status, 128+signal, or -1
 * when it could not run or timed out (then killed). */
int it_acl_run_capture(char *const argv[], int timeout_ms, char *out, size_t cap);

#endif
