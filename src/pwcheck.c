/*
 * pwcheck: the network process's side of the password checks. A check goes
 * to the keeper at once, tagged with its client's address group (IPv6 cut
 * to ipv6-prefix); the keeper answers what its cache or a plain-text secret
 * decides and queues the rest per group, the groups taking turns. Here a
 * check only waits while the keeper's socket is full (a FIFO, in order).
 * A client that leaves cancels its check, which the keeper then drops.
 *
 * The keeper's socket is in the loop like any other; when it closes, the
 * keeper is started again (it reads the configuration file itself: this
 * process has no secrets to give it) and the checks it held are sent once
 * more, or answered PWCHECK_ERROR after a second loss.
 */
#include "pwcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

#define PWCHECK_BUCKETS 1024
/* A keeper that died within this of its start is not started again at once. */
#define PWCHECK_RESTART_MS 1000

TAILQ_HEAD(pwcheck_job_list, pwcheck_job);

struct pwcheck {
	struct loop *loop;
	struct pwcheck_options opt;
	struct watcher w; /* the keeper's socket; fd -1 while none */
	pid_t keeper;
	uint64_t keeper_started_ms;
	struct timer restart;
	uint64_t next_id;
	struct pwcheck_job_list backlog;               /* not sent yet, oldest first */
	struct pwcheck_job_list sent[PWCHECK_BUCKETS]; /* at the keeper, by id */
	struct pwcheck_stats stats;
};

static void pwcheck_flush(struct pwcheck *pw);
static void pwcheck_on_keeper(struct loop *loop, unsigned events, void *arg);

static struct pwcheck_job_list *
pwcheck_bucket(struct pwcheck *pw, uint64_t id)
{
	return &pw->sent[id % PWCHECK_BUCKETS];
}

/* The client's group: family, then the address, IPv6 cut to the prefix. */
static void
pwcheck_group_key(const struct pwcheck *pw, const union sockaddr_any *client,
	uint8_t key[PWHELPER_GROUP_LEN])
{
	unsigned bits = pw->opt.ipv6_prefix;

	memset(key, 0, PWHELPER_GROUP_LEN);
	key[0] = (uint8_t)client->sa.sa_family;
	if (client->sa.sa_family == AF_INET) {
		memcpy(key + 1, &client->sin.sin_addr, 4);
	} else if (client->sa.sa_family == AF_INET6) {
		for (unsigned i = 0; i < 16 && bits > 0; i++, bits = bits > 8 ? bits - 8 : 0)
			key[1 + i] = (uint8_t)(client->sin6.sin6_addr.s6_addr[i] &
				(0xFF00u >> (bits >= 8 ? 8 : bits)));
	}
}

static void
pwcheck_answer(struct pwcheck *pw, struct pwcheck_job *job, enum pwcheck_result r, bool hashed)
{
	pwcheck_done_cb done = job->done;
	void *arg = job->arg;

	explicit_bzero(&job->msg, sizeof(job->msg));
	job->state = PWCHECK_JOB_IDLE;
	pw->stats.ok += r == PWCHECK_OK;
	pw->stats.failed += r == PWCHECK_FAIL;
	pw->stats.errors += r == PWCHECK_ERROR;
	pw->stats.hashed += hashed;
	/* Last: done may cancel other jobs, or free this one's owner. */
	done(r, hashed, arg);
}

/* --- the keeper ------------------------------------------------------------------ */

static int
pwcheck_spawn_keeper(struct pwcheck *pw, struct auth_table *users)
{
	int fd = pwhelper_start(users, &pw->opt.helper, &pw->keeper);

	if (fd < 0)
		return -1;
	watcher_init(&pw->w, fd, pwcheck_on_keeper, pw);
	if (loop_watch(pw->loop, &pw->w, LOOP_READ) < 0) {
		close(fd);
		pw->w.fd = -1;
		return -1;
	}
	pw->keeper_started_ms = loop_now(pw->loop);
	log_info("auth: password keeper %ld started, %u hasher(s)", (long)pw->keeper,
		pw->opt.helper.hashers);
	return 0;
}

static void
pwcheck_on_restart(struct loop *loop, void *arg)
{
	struct pwcheck *pw = arg;

	if (pw->w.fd >= 0)
		return;
	if (pwcheck_spawn_keeper(pw, NULL) < 0) {
		log_warn("auth: starting the password keeper");
		timer_start(loop, &pw->restart, PWCHECK_RESTART_MS);
		return;
	}
	pw->stats.keeper_restarts++;
	pwcheck_flush(pw);
}

/* The keeper's socket closed: its checks go to the front of the backlog
 * (once more each), and a new keeper reads the configuration file. */
static void
pwcheck_keeper_lost(struct pwcheck *pw)
{
	struct pwcheck_job_list again;
	struct pwcheck_job *job;
	unsigned n = 0;

	loop_unwatch_closing(pw->loop, &pw->w);
	close(pw->w.fd);
	pw->w.fd = -1;
	(void)kill(pw->keeper, SIGKILL);
	(void)waitpid(pw->keeper, NULL, 0);
	TAILQ_INIT(&again);
	for (size_t b = 0; b < PWCHECK_BUCKETS; b++)
		while ((job = TAILQ_FIRST(&pw->sent[b]))) {
			TAILQ_REMOVE(&pw->sent[b], job, link);
			pw->stats.sent--;
			if (job->tries >= 2) {
				pwcheck_answer(pw, job, PWCHECK_ERROR, false);
				continue;
			}
			job->state = PWCHECK_JOB_WAITING;
			TAILQ_INSERT_TAIL(&again, job, link);
			pw->stats.waiting++;
			n++;
		}
	TAILQ_CONCAT(&again, &pw->backlog, link);
	TAILQ_CONCAT(&pw->backlog, &again, link);
	log_warnx("auth: the password keeper %ld died; %u check(s) to send again", (long)pw->keeper,
		n);
	timer_start(pw->loop, &pw->restart,
		loop_now(pw->loop) - pw->keeper_started_ms < PWCHECK_RESTART_MS ? PWCHECK_RESTART_MS
										: 0);
}

static void
pwcheck_on_verdict(struct pwcheck *pw, const struct pwmsg_verdict *v)
{
	struct pwcheck_job_list *list = pwcheck_bucket(pw, v->id);
	struct pwcheck_job *job;

	TAILQ_FOREACH(job, list, link)
	if (job->msg.id == v->id)
		break;
	if (!job)
		return; /* cancelled while at the keeper */
	TAILQ_REMOVE(list, job, link);
	pw->stats.sent--;
	pwcheck_answer(pw, job, (enum pwcheck_result)v->result, v->hashed != 0);
}

static void
pwcheck_on_keeper(struct loop *loop, unsigned events, void *arg)
{
	struct pwcheck *pw = arg;
	union {
		uint32_t type;
		struct pwmsg_verdict v;
		struct pwmsg_reloaded r;
	} m;

	for (int i = 0; i < 64 && (events & LOOP_READ) && pw->w.fd >= 0; i++) {
		ssize_t n = recv(pw->w.fd, &m, sizeof(m), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == (ssize_t)sizeof(m.v) && m.type == PWMSG_VERDICT) {
			pwcheck_on_verdict(pw, &m.v);
		} else if (n == (ssize_t)sizeof(m.r) && m.type == PWMSG_RELOADED) {
			m.r.message[sizeof(m.r.message) - 1] = '\0';
			if (m.r.ok)
				log_info("auth: password keeper reloaded: %s", m.r.message);
			else
				log_errorx("auth: password keeper kept the old users: %s",
					m.r.message);
		} else {
			pwcheck_keeper_lost(pw);
			return;
		}
	}
	pwcheck_flush(pw);
}

/* --- checks -------------------------------------------------------------------- */

/* Sends the backlog while the keeper's socket takes it; watches for room
 * when it is full. */
static void
pwcheck_flush(struct pwcheck *pw)
{
	struct pwcheck_job *job;

	if (pw->w.fd < 0)
		return;
	while ((job = TAILQ_FIRST(&pw->backlog))) {
		ssize_t n;
		do {
			n = send(pw->w.fd, &job->msg, sizeof(job->msg),
				MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
			break;
		if (n != (ssize_t)sizeof(job->msg)) {
			pwcheck_keeper_lost(pw);
			return;
		}
		TAILQ_REMOVE(&pw->backlog, job, link);
		pw->stats.waiting--;
		job->tries++;
		job->state = PWCHECK_JOB_SENT;
		TAILQ_INSERT_TAIL(pwcheck_bucket(pw, job->msg.id), job, link);
		pw->stats.sent++;
	}
	if (loop_watch(pw->loop, &pw->w, LOOP_READ | (job ? LOOP_WRITE : 0)) < 0)
		log_warn("auth: epoll for the password keeper");
}

void
pwcheck_submit(struct pwcheck *pw, struct pwcheck_job *job, const union sockaddr_any *client,
	const char *user, size_t ulen, const char *pass, size_t plen, pwcheck_done_cb done,
	void *arg)
{
	job->pw = pw;
	job->done = done;
	job->arg = arg;
	job->tries = 0;
	/* All of it: the whole message is sent, and bytes past the name and
	 * password must not be whatever the buffer held before. */
	memset(&job->msg, 0, sizeof(job->msg));
	job->msg.type = PWMSG_CHECK;
	job->msg.id = ++pw->next_id;
	job->msg.ulen = (uint8_t)(ulen > PWHELPER_FIELD_MAX ? PWHELPER_FIELD_MAX : ulen);
	job->msg.plen = (uint8_t)(plen > PWHELPER_FIELD_MAX ? PWHELPER_FIELD_MAX : plen);
	pwcheck_group_key(pw, client, job->msg.group);
	memcpy(job->msg.user, user, job->msg.ulen);
	memcpy(job->msg.pass, pass, job->msg.plen);
	job->state = PWCHECK_JOB_WAITING;
	TAILQ_INSERT_TAIL(&pw->backlog, job, link);
	pw->stats.waiting++;
	pw->stats.checks++;
	pwcheck_flush(pw);
}

void
pwcheck_cancel(struct pwcheck_job *job)
{
	struct pwcheck *pw = job->pw;

	if (job->state == PWCHECK_JOB_WAITING) {
		TAILQ_REMOVE(&pw->backlog, job, link);
		pw->stats.waiting--;
	} else if (job->state == PWCHECK_JOB_SENT) {
		struct pwmsg_cancel c = { .type = PWMSG_CANCEL, .id = job->msg.id };
		TAILQ_REMOVE(pwcheck_bucket(pw, job->msg.id), job, link);
		pw->stats.sent--;
		/* Best effort: a check the keeper cannot drop is answered to
		 * nobody (its verdict finds no job). */
		if (pw->w.fd >= 0)
			(void)send(pw->w.fd, &c, sizeof(c), MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	explicit_bzero(&job->msg, sizeof(job->msg));
	job->state = PWCHECK_JOB_IDLE;
}

/* --- life ---------------------------------------------------------------------------- */

struct pwcheck *
pwcheck_start(struct loop *loop, struct auth_table *users, const struct pwcheck_options *opt)
{
	struct pwcheck *pw = calloc(1, sizeof(*pw));
	int saved;

	if (!pw)
		return NULL;
	pw->loop = loop;
	pw->opt = *opt;
	pw->w.fd = -1;
	TAILQ_INIT(&pw->backlog);
	for (size_t i = 0; i < PWCHECK_BUCKETS; i++)
		TAILQ_INIT(&pw->sent[i]);
	timer_init(&pw->restart, pwcheck_on_restart, pw);
	if (pwcheck_spawn_keeper(pw, users) < 0) {
		saved = errno;
		free(pw);
		errno = saved;
		return NULL;
	}
	return pw;
}

void
pwcheck_reload(struct pwcheck *pw, const struct pwcheck_options *opt)
{
	const uint32_t msg = PWMSG_RELOAD;

	pw->opt = *opt;
	if (pw->w.fd >= 0 && send(pw->w.fd, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_warn("auth: asking the password keeper to reload");
}

void
pwcheck_stop(struct pwcheck *pw)
{
	if (!pw)
		return;
	timer_stop(pw->loop, &pw->restart);
	if (pw->w.fd >= 0) {
		/* The keeper exits at EOF; TERM in case it is stuck. */
		loop_unwatch_closing(pw->loop, &pw->w);
		close(pw->w.fd);
		(void)kill(pw->keeper, SIGTERM);
		(void)waitpid(pw->keeper, NULL, 0);
	}
	free(pw);
}

const struct pwcheck_stats *
pwcheck_get_stats(const struct pwcheck *pw)
{
	return &pw->stats;
}
