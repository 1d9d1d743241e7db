/*
 * pwcheck: password checks from the event loop, answered by the helper
 * processes (pwhelper) that hold the hashes. Each check carries its
 * client's address group (IPv6 by prefix); at the keeper the groups take
 * turns, so a client that floods the helpers with wrong passwords delays
 * others by at most one check per turn, and a cached password is answered
 * at once. A client waits for its turn (within its handshake timeout) and
 * is never told "wrong password" because the server is busy.
 */
#ifndef SOCKS5D_PWCHECK_H
#define SOCKS5D_PWCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "addr.h"
#include "loop.h"
#include "pwhelper.h"

struct auth_table;
struct pwcheck;

/* The verdict, on a later loop iteration than the submit; hashed says
 * crypt(3) ran for it. */
typedef void (*pwcheck_done_cb)(enum pwcheck_result result, bool hashed, void *arg);

enum pwcheck_job_state {
	PWCHECK_JOB_IDLE,    /* not submitted, answered, or cancelled */
	PWCHECK_JOB_WAITING, /* in the backlog: the keeper's socket was full */
	PWCHECK_JOB_SENT,    /* at the keeper */
};

/* One check, embedded in its owner (no allocation per check). */
struct pwcheck_job {
	TAILQ_ENTRY(pwcheck_job) link; /* its group's queue, or the sent list */
	struct pwcheck *pw;
	struct pwcheck_group *group; /* while waiting */
	union sockaddr_any client;   /* whose check it is (its group) */
	struct pwmsg_check msg;      /* id, user and password; wiped when answered */
	unsigned tries;              /* times sent to a keeper */
	enum pwcheck_job_state state;
	pwcheck_done_cb done;
	void *arg;
};

struct pwcheck_options {
	struct pwhelper_options helper; /* the configuration file and auth-workers */
	unsigned ipv6_prefix;           /* client groups: IPv6 by this many bits */
};

struct pwcheck_stats {
	uint64_t checks;          /* submitted */
	uint64_t ok, failed;      /* verdicts */
	uint64_t errors;          /* could not be checked (a helper died twice) */
	uint64_t hashed;          /* verdicts that ran crypt(3) */
	uint64_t keeper_restarts; /* the keeper died and was started again */
	size_t waiting;           /* checks not sent yet (the keeper's socket was full) */
	size_t sent;              /* checks at the keeper now */
};

/* Forks the keeper with users (which the caller should wipe afterwards:
 * auth_table_forget_secrets). Returns NULL with errno on failure. */
struct pwcheck *pwcheck_start(struct loop *loop, struct auth_table *users,
	const struct pwcheck_options *opt);
/* The keeper reads the configuration file again and starts fresh hashers;
 * checks in flight finish against the table they started with. opt's
 * ipv6_prefix applies to checks submitted from now on. */
void pwcheck_reload(struct pwcheck *pw, const struct pwcheck_options *opt);
/* Closes the keeper's socket (the helpers exit); jobs must be cancelled
 * first. */
void pwcheck_stop(struct pwcheck *pw);

/* Queues a check of user/pass (ulen, plen: the lengths the client sent,
 * at most PWHELPER_FIELD_MAX) for client. done runs once, later, unless
 * pwcheck_cancel comes first. */
void pwcheck_submit(struct pwcheck *pw, struct pwcheck_job *job, const union sockaddr_any *client,
	const char *user, size_t ulen, const char *pass, size_t plen, pwcheck_done_cb done,
	void *arg);
/* done will not run; the job may be freed. No-op for an idle job. */
void pwcheck_cancel(struct pwcheck_job *job);
const struct pwcheck_stats *pwcheck_get_stats(const struct pwcheck *pw);

#endif
