/*
 * admin: what the control socket's commands do (control is the socket,
 * this the answers). sessions lists the running sessions, users the users
 * seen since the start (bytes, sessions, shared limit, quota), clients the
 * client groups with a limit or quota; kill closes a session; quota-reset
 * starts a user's or client group's quota over; reload reloads. Records are
 * key=value with the log's escaping, or with --json one JSON object a line.
 * While it runs it samples the sessions' rates once a second.
 */
#ifndef SOCKS5D_ADMIN_H
#define SOCKS5D_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"

struct conn_env;
struct loop;
struct admin;

#define ADMIN_SAMPLE_MS 1000

/* A reload: 0 done, 1 passed on (to the supervisor), -1 failed with the
 * reason in err. */
typedef int (*admin_reload_cb)(void *arg, char *err, size_t errlen);

struct admin *admin_new(struct loop *loop, struct conn_env *env, admin_reload_cb reload, void *arg);
void admin_free(struct admin *a);
/* control's handler; arg is the struct admin. */
bool admin_handle(const struct control_request *req, struct control_reply *w, uint64_t *cursor,
	void *arg);

/* s as a JSON string (quotes included) into out: '"', '\' and control
 * bytes escaped, bytes from 0x80 as \u0080..\u00ff (names are bytes, not
 * necessarily UTF-8). Cut at cap, still a valid string. */
char *admin_json_string(const char *s, char *out, size_t cap);

#endif
