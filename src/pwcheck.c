/*
 * pwcheck: the network process's side of the password checks. Waiting
 * checks are grouped by client address (IPv6 by prefix); the groups with
 * checks take turns (round robin), one check per turn, and at most
 * PWCHECK_SENT_MAX are at the keeper at once, so the keeper never holds a
 * long queue of one client's checks. The keeper's socket is in the loop like
 * any other; when it closes, the keeper is started again (it reads the
 * configuration file itself: this process has no secrets to give it) and
 * the checks it held are sent once more, or answered PWCHECK_ERROR after a
 * second loss.
 */
#include "pwcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* Checks at the keeper at once: enough to keep every hasher busy and
 * cached answers flowing, few enough that turns still decide the order. */
#define PWCHECK_SENT_MAX(pw) (2 * (pw)->opt.helper.hashers + 2)
#define PWCHECK_BUCKETS 1024
/* A keeper that died within this of its start is not started again at once. */
#define PWCHECK_RESTART_MS 1000

struct pwcheck_group {
	TAILQ_ENTRY(pwcheck_group) turn;  /* pw->turns: groups with checks */
	LIST_ENTRY(pwcheck_group) bucket; /* pw->buckets */
	union sockaddr_any key;           /* the client address, IPv6 cut to the prefix */
	TAILQ_HEAD(, pwcheck_job) jobs;   /* oldest first */
};

struct pwcheck {
	struct loop *loop;
	struct pwcheck_options opt;
	struct watcher w; /* the keeper's socket; fd -1 while none */
	pid_t keeper;
	uint64_t keeper_started_ms;
	struct timer restart;
	uint64_t next_id;
	uint64_t seed; /* of the bucket hash */
	TAILQ_HEAD(, pwcheck_group) turns;
	LIST_HEAD(, pwcheck_group) buckets[PWCHECK_BUCKETS];
	TAILQ_HEAD(pwcheck_sent_list, pwcheck_job) sent;
	struct pwcheck_stats stats;
};

static void pwcheck_dispatch(struct pwcheck *pw);
static void pwcheck_on_keeper(struct loop *loop, unsigned events, void *arg);

/* --- groups ------------------------------------------------------------------- */

static union sockaddr_any
pwcheck_group_key(const struct pwcheck *pw, const union sockaddr_any *client)
{
	union sockaddr_any k;
	unsigned bits = pw->opt.ipv6_prefix;

	memset(&k, 0, sizeof(k));
	k.sa.sa_family = client->sa.sa_family;
	if (client->sa.sa_family == AF_INET) {
		k.sin.sin_addr = client->sin.sin_addr;
	} else if (client->sa.sa_family == AF_INET6) {
		for (unsigned i = 0; i < 16 && bits > 0; i++, bits = bits > 8 ? bits - 8 : 0)
			k.sin6.sin6_addr.s6_addr[i] = (uint8_t)(client->sin6.sin6_addr.s6_addr[i] &
				(0xFF00u >> (bits >= 8 ? 8 : bits)));
	}
	return k;
}

static size_t
pwcheck_bucket(const struct pwcheck *pw, const union sockaddr_any *key)
{
	const uint8_t *p = (const uint8_t *)key;
	uint64_t h = pw->seed;

	for (size_t i = 0; i < sizeof(*key); i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return (size_t)(h >> 32) % PWCHECK_BUCKETS;
}

static struct pwcheck_group *
pwcheck_group_for(struct pwcheck *pw, const union sockaddr_any *client)
{
	union sockaddr_any key = pwcheck_group_key(pw, client);
	size_t b = pwcheck_bucket(pw, &key);
	struct pwcheck_group *g;

	LIST_FOREACH(g, &pw->buckets[b], bucket)
	if (addr_ip_equal(&g->key, &key))
		return g;
	if (!(g = calloc(1, sizeof(*g))))
		return NULL;
	g->key = key;
	TAILQ_INIT(&g->jobs);
	LIST_INSERT_HEAD(&pw->buckets[b], g, bucket);
	TAILQ_INSERT_TAIL(&pw->turns, g, turn);
	return g;
}

static void
pwcheck_group_drop(struct pwcheck *pw, struct pwcheck_group *g)
{
	TAILQ_REMOVE(&pw->turns, g, turn);
	LIST_REMOVE(g, bucket);
	free(g);
}

/* Puts a job in its group's queue; first: at the head (a retry). */
static bool
pwcheck_enqueue(struct pwcheck *pw, struct pwcheck_job *job, bool first)
{
	struct pwcheck_group *g = pwcheck_group_for(pw, &job->client);

	if (!g)
		return false;
	if (first)
		TAILQ_INSERT_HEAD(&g->jobs, job, link);
	else
		TAILQ_INSERT_TAIL(&g->jobs, job, link);
	job->group = g;
	job->state = PWCHECK_JOB_WAITING;
	pw->stats.waiting++;
	return true;
}

/* --- the keeper ---------------------------------------------------------------- */

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
	/* Last: done may cancel or free other jobs, or this one's owner. */
	done(r, hashed, arg);
}

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
	pwcheck_dispatch(pw);
}

/* The keeper's socket closed: its checks are sent again (once), and a new
 * keeper reads the configuration file. */
static void
pwcheck_keeper_lost(struct pwcheck *pw)
{
	struct pwcheck_job *job;
	unsigned again = 0;

	loop_unwatch_closing(pw->loop, &pw->w);
	close(pw->w.fd);
	pw->w.fd = -1;
	(void)kill(pw->keeper, SIGKILL);
	(void)waitpid(pw->keeper, NULL, 0);
	/* From the newest: each goes to the head of its group's queue, so
	 * they leave again in the order they left first. */
	while ((job = TAILQ_LAST(&pw->sent, pwcheck_sent_list))) {
		TAILQ_REMOVE(&pw->sent, job, link);
		pw->stats.sent--;
		if (job->tries >= 2 || !pwcheck_enqueue(pw, job, true))
			pwcheck_answer(pw, job, PWCHECK_ERROR, false);
		else
			again++;
	}
	log_warnx("auth: the password keeper %ld died; %u check(s) to send again", (long)pw->keeper,
		again);
	timer_start(pw->loop, &pw->restart,
		loop_now(pw->loop) - pw->keeper_started_ms < PWCHECK_RESTART_MS ? PWCHECK_RESTART_MS
										: 0);
}

static void
pwcheck_on_verdict(struct pwcheck *pw, const struct pwmsg_verdict *v)
{
	struct pwcheck_job *job;

	TAILQ_FOREACH(job, &pw->sent, link)
	if (job->msg.id == v->id)
		break;
	if (!job)
		return; /* cancelled while at the keeper */
	TAILQ_REMOVE(&pw->sent, job, link);
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

	for (int i = 0; i < 64 && pw->w.fd >= 0; i++) {
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
			break;
		}
	}
	pwcheck_dispatch(pw);
}

/* --- checks -------------------------------------------------------------------- */

/* Groups take turns: one check from the group at the head, which then goes
 * to the tail (or away, when it has no more). */
static void
pwcheck_dispatch(struct pwcheck *pw)
{
	struct pwcheck_group *g;

	while (pw->w.fd >= 0 && pw->stats.sent < PWCHECK_SENT_MAX(pw) &&
		(g = TAILQ_FIRST(&pw->turns))) {
		struct pwcheck_job *job = TAILQ_FIRST(&g->jobs);
		ssize_t n;

		do {
			n = send(pw->w.fd, &job->msg, sizeof(job->msg),
				MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		if (n < 0 && errno == EAGAIN)
			return; /* the keeper's queue is full: its answers wake us */
		TAILQ_REMOVE(&g->jobs, job, link);
		pw->stats.waiting--;
		job->group = NULL;
		if (TAILQ_EMPTY(&g->jobs)) {
			pwcheck_group_drop(pw, g);
		} else {
			TAILQ_REMOVE(&pw->turns, g, turn);
			TAILQ_INSERT_TAIL(&pw->turns, g, turn);
		}
		job->tries++;
		job->state = PWCHECK_JOB_SENT;
		TAILQ_INSERT_TAIL(&pw->sent, job, link);
		pw->stats.sent++;
		if (n != (ssize_t)sizeof(job->msg)) {
			pwcheck_keeper_lost(pw);
			return;
		}
	}
}

void
pwcheck_submit(struct pwcheck *pw, struct pwcheck_job *job, const union sockaddr_any *client,
	const char *user, size_t ulen, const char *pass, size_t plen, pwcheck_done_cb done,
	void *arg)
{
	memset(job, 0, sizeof(*job));
	job->pw = pw;
	job->done = done;
	job->arg = arg;
	job->msg.type = PWMSG_CHECK;
	job->msg.id = ++pw->next_id;
	job->msg.ulen = (uint8_t)(ulen > PWHELPER_FIELD_MAX ? PWHELPER_FIELD_MAX : ulen);
	job->msg.plen = (uint8_t)(plen > PWHELPER_FIELD_MAX ? PWHELPER_FIELD_MAX : plen);
	memcpy(job->msg.user, user, job->msg.ulen);
	memcpy(job->msg.pass, pass, job->msg.plen);
	job->client = *client;
	pw->stats.checks++;
	if (!pwcheck_enqueue(pw, job, false)) {
		/* Out of memory for a group: a check that cannot wait in turn
		 * is not answered "wrong" either; the handshake times out. */
		log_warnx("auth: out of memory queueing a password check");
		explicit_bzero(&job->msg, sizeof(job->msg));
		job->state = PWCHECK_JOB_IDLE;
		return;
	}
	pwcheck_dispatch(pw);
}

void
pwcheck_cancel(struct pwcheck_job *job)
{
	struct pwcheck *pw = job->pw;

	if (job->state == PWCHECK_JOB_WAITING) {
		TAILQ_REMOVE(&job->group->jobs, job, link);
		pw->stats.waiting--;
		if (TAILQ_EMPTY(&job->group->jobs))
			pwcheck_group_drop(pw, job->group);
	} else if (job->state == PWCHECK_JOB_SENT) {
		TAILQ_REMOVE(&pw->sent, job, link);
		pw->stats.sent--;
	}
	explicit_bzero(&job->msg, sizeof(job->msg));
	job->state = PWCHECK_JOB_IDLE;
}

/* --- life -------------------------------------------------------------------------- */

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
	TAILQ_INIT(&pw->turns);
	TAILQ_INIT(&pw->sent);
	for (size_t i = 0; i < PWCHECK_BUCKETS; i++)
		LIST_INIT(&pw->buckets[i]);
	if (getrandom(&pw->seed, sizeof(pw->seed), 0) != sizeof(pw->seed))
		pw->seed = 0xcbf29ce484222325ULL;
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
