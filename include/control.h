/*
 * control: the control socket (`control PATH`) that `socks5d ctl` talks
 * to. A unix stream socket, mode 0600, served from the event loop: one
 * request per connection, a line of at most CONTROL_REQUEST_MAX bytes that
 * must arrive within the timeout; the answer is written a chunk at a time
 * through a fixed buffer (the owner's handler is called again for the next
 * records as the socket drains), then the connection closes. What the
 * commands do is the owner's (admin); the request's grammar is here, for
 * the server and the client alike:
 *
 *     request = word *(" " word) ["\r"] "\n"
 *     word    = 1*(%x21-7E), names percent-encoded (pct)
 *
 * commands: sessions | users | clients | kill ID | quota-reset NAME |
 * quota-reset --client ADDRESS | reload, each with an optional --json.
 * The answer's first line is "ok" or "error: MESSAGE"; records follow, one
 * a line.
 */
#ifndef SOCKS5D_CONTROL_H
#define SOCKS5D_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

struct loop;
struct control_server;
struct control_reply;

#define CONTROL_REQUEST_MAX 512
/* Bytes of answer held per connection at once; records are written as
 * they fit. */
#define CONTROL_REPLY_CAP 16384
#define CONTROL_MAX_CLIENTS 16
#define CONTROL_NAME_MAX 255

enum control_cmd {
	CONTROL_SESSIONS,
	CONTROL_USERS,
	CONTROL_CLIENTS,
	CONTROL_KILL,
	CONTROL_QUOTA_RESET,
	CONTROL_RELOAD,
};

struct control_request {
	enum control_cmd cmd;
	bool json;                       /* --json: one JSON object per record */
	bool client;                     /* quota-reset --client */
	uint64_t id;                     /* kill */
	char name[CONTROL_NAME_MAX + 1]; /* quota-reset: decoded, NUL-terminated */
	size_t name_len;
};

enum control_status {
	CONTROL_OK,
	CONTROL_NEED_MORE,
	CONTROL_ERR_TOO_LONG, /* no end of line within CONTROL_REQUEST_MAX bytes */
	CONTROL_ERR_BYTE,     /* a byte that no request holds */
	CONTROL_ERR_COMMAND,  /* an unknown command or option */
	CONTROL_ERR_ARGS,     /* wrong arguments for the command */
};

/* Parses one request line from p[0..len). OK with *used (the line and its
 * end) and *out; NEED_MORE until the line ends; an error as soon as the
 * bytes show one (a bad byte, too long), else at the end of the line.
 * *out is written on OK only. Pure. */
enum control_status control_parse_request(const uint8_t *p, size_t len, struct control_request *out,
	size_t *used);
const char *control_status_str(enum control_status st);
/* The line (with its "\n") that parses to r, into out; -1 when it does not
 * fit in cap. */
int control_format_request(const struct control_request *r, char *out, size_t cap);
/* The command's name ("quota-reset"). */
const char *control_cmd_name(enum control_cmd cmd);

/* --- the server ------------------------------------------------------------- */

/* Answers req: on the first call (*cursor 0) it starts with control_ok or
 * control_error; then writes records with control_printf until one does
 * not fit. Returns true when the answer is complete, false to be called
 * again (with *cursor as it left it) once the buffer has drained. */
typedef bool (*control_handler_cb)(const struct control_request *req, struct control_reply *w,
	uint64_t *cursor, void *arg);

/* Appends text when all of it fits; -1 (nothing written) when not. */
int control_printf(struct control_reply *w, const char *fmt, ...) LOG_PRINTF(2, 3);
void control_ok(struct control_reply *w);
void control_error(struct control_reply *w, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Listens on path: a stale socket there is replaced (anything else is an
 * error), the socket is made with mode 0600 and given to uid:gid when they
 * are not -1. A client has timeout_ms to send its request, and again for
 * each part of the answer to be taken. Returns NULL with errno. */
struct control_server *control_start(struct loop *loop, const char *path, uid_t uid, gid_t gid,
	unsigned timeout_ms, control_handler_cb handler, void *arg);
/* Closes the listener (and removes its socket file) and every client. */
void control_stop(struct control_server *s);
const char *control_path(const struct control_server *s);
void control_set_timeout(struct control_server *s, unsigned timeout_ms);

#endif
