/*
 * pwhelper: the keeper and its hashers. Both are forked children of the
 * daemon's binary that run no network code: the keeper runs a loop of its
 * own over the network process's socket and one socket per hasher; a
 * hasher is a blocking loop of receive, crypt(3), reply.
 *
 * The keeper answers a check itself when no hash is needed (auth_check_ex
 * with may_hash false: a password verified before, a plain-text secret, a
 * table without hashes). The others wait in a queue per client address
 * group; the groups with checks take turns, one check each, to the hasher
 * with the fewest in flight (at most PWHELPER_DEPTH). A check whose client
 * left is dropped while it waits (PWMSG_CANCEL). A hasher that dies
 * is replaced, and its checks are tried once more before the verdict is
 * PWCHECK_ERROR. A reload reads the configuration again, keeps the cache
 * for users whose secret did not change, and starts a new generation of
 * hashers; the old ones finish what they hold against the old table, then
 * their sockets close and they exit.
 */
#include "pwhelper.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "siphash.h"

/* Checks sent to one hasher at a time: the next is queued in its socket
 * while it hashes, so it never waits for the keeper. */
#define PWHELPER_DEPTH 2
/* A hasher that keeps dying is restarted no faster than this. */
#define PWHELPER_RESPAWN_MS 1000
/* The network end of the keeper's socket, and a hasher's end of its own,
 * after the descriptors the child does not need are closed. */
#define PWHELPER_FD 3

#define PWHELPER_BUCKETS 1024

struct pw_group;

struct pw_request {
	TAILQ_ENTRY(pw_request) link; /* its group's queue, or a hasher's */
	LIST_ENTRY(pw_request) byid;  /* k->ids, for PWMSG_CANCEL */
	struct pw_group *group;       /* while it waits */
	struct pwmsg_check msg;       /* as the network sent it */
	unsigned tries;               /* hashers it was sent to */
	bool cancelled;               /* at a hasher when its client left */
};
TAILQ_HEAD(pw_request_list, pw_request);

/* The checks of one client address group that wait for a hasher. */
struct pw_group {
	TAILQ_ENTRY(pw_group) turn;  /* k->turns */
	LIST_ENTRY(pw_group) bucket; /* k->groups */
	uint8_t key[PWHELPER_GROUP_LEN];
	struct pw_request_list waiting;
};

struct keeper;

struct hasher {
	TAILQ_ENTRY(hasher) link;
	struct keeper *k;
	struct watcher w;
	pid_t pid;
	unsigned gen; /* the table generation it holds */
	struct pw_request_list inflight;
	unsigned ninflight;
	bool stopped; /* hasher_stop ran; freed after the batch */
	struct release rel;
};
TAILQ_HEAD(hasher_list, hasher);

struct keeper {
	struct loop *loop;
	struct watcher net; /* the network process */
	struct pwhelper_options opt;
	struct config *cfg;       /* its users, after a reload; NULL before */
	struct auth_table *users; /* the table in use */
	unsigned gen;
	struct hasher_list hashers;
	TAILQ_HEAD(, pw_group) turns;                   /* groups with waiting checks */
	LIST_HEAD(, pw_group) groups[PWHELPER_BUCKETS]; /* the same, by key */
	LIST_HEAD(, pw_request) ids[PWHELPER_BUCKETS];  /* every check, by id */
	struct timer respawn;
};

/* --- both children ---------------------------------------------------------- */

/* What a forked helper must not inherit: the network process's descriptors
 * (client sockets, listeners, its epoll set) and its signal setup. keep is
 * moved to PWHELPER_FD; stdin, stdout and stderr (the log) stay. */
static void
pwhelper_child_setup(int keep)
{
	struct sigaction dfl;
	sigset_t none;

	if (keep != PWHELPER_FD && dup2(keep, PWHELPER_FD) < 0)
		_exit(1);
	if (close_range(PWHELPER_FD + 1, ~0U, 0) < 0)
		for (int fd = PWHELPER_FD + 1; fd < 1024; fd++)
			(void)close(fd);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &dfl, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static bool
pwhelper_send(int fd, const void *msg, size_t len)
{
	ssize_t n;

	do {
		n = send(fd, msg, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)len;
}

/* --- hasher ------------------------------------------------------------------ */

/* Lowest nice value: hashing gets little CPU while the relaying process
 * (nice 0) wants it, all of it when it does not. Not SCHED_IDLE: with it,
 * any other busy process on the host starved the hashers outright and
 * logins waited until their handshake timed out (seen with a second CPU
 * hog on a 2-CPU machine); nice 19 keeps a small share whatever runs. */
static void
hasher_lower_priority(void)
{
	(void)setpriority(PRIO_PROCESS, 0, 19);
}

static void __attribute__((noreturn)) hasher_main(struct auth_table *users, int fd)
{
	struct pwmsg_check m;
	struct pwmsg_verdict v = { .type = PWMSG_VERDICT };

	pwhelper_child_setup(fd);
	hasher_lower_priority();
	for (;;) {
		ssize_t n = recv(PWHELPER_FD, &m, sizeof(m), 0);
		bool hashed = false;
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(m) || m.type != PWMSG_CHECK)
			_exit(0); /* the keeper is gone (or speaks nonsense) */
		m.user[m.ulen] = '\0';
		m.pass[m.plen] = '\0';
		/* A NUL inside a field never authenticates, but costs the same
		 * work: the C-string check sees an unknown user or a wrong
		 * password. */
		v.result = auth_check_ex(users, m.user, m.pass, true, &hashed) == AUTH_RESULT_OK &&
				strlen(m.user) == m.ulen && strlen(m.pass) == m.plen
			? PWCHECK_OK
			: PWCHECK_FAIL;
		v.hashed = hashed;
		v.id = m.id;
		explicit_bzero(&m, sizeof(m));
		if (!pwhelper_send(PWHELPER_FD, &v, sizeof(v)))
			_exit(0);
	}
}

/* --- keeper: queues ---------------------------------------------------------- */

/* Keyed: clients choose their addresses, so they must not be able to pile
 * their groups into one bucket. */
static uint8_t pw_hash_key[SIPHASH_KEY_LEN];

static size_t
pw_hash(const void *p, size_t n)
{
	return (size_t)(siphash24(pw_hash_key, p, n) % PWHELPER_BUCKETS);
}

/* Queues r at the tail of its group (head: a retry), the group taking its
 * turn after the others. */
static bool
keeper_enqueue(struct keeper *k, struct pw_request *r, bool head)
{
	size_t b = pw_hash(r->msg.group, PWHELPER_GROUP_LEN);
	struct pw_group *g;

	LIST_FOREACH(g, &k->groups[b], bucket)
	if (memcmp(g->key, r->msg.group, PWHELPER_GROUP_LEN) == 0)
		break;
	if (!g) {
		if (!(g = calloc(1, sizeof(*g))))
			return false;
		memcpy(g->key, r->msg.group, PWHELPER_GROUP_LEN);
		TAILQ_INIT(&g->waiting);
		LIST_INSERT_HEAD(&k->groups[b], g, bucket);
		if (head)
			TAILQ_INSERT_HEAD(&k->turns, g, turn);
		else
			TAILQ_INSERT_TAIL(&k->turns, g, turn);
	}
	if (head)
		TAILQ_INSERT_HEAD(&g->waiting, r, link);
	else
		TAILQ_INSERT_TAIL(&g->waiting, r, link);
	r->group = g;
	return true;
}

/* Takes r out of its group's queue; a group left empty goes. */
static void
keeper_dequeue(struct keeper *k, struct pw_request *r)
{
	struct pw_group *g = r->group;

	TAILQ_REMOVE(&g->waiting, r, link);
	r->group = NULL;
	if (TAILQ_EMPTY(&g->waiting)) {
		TAILQ_REMOVE(&k->turns, g, turn);
		LIST_REMOVE(g, bucket);
		free(g);
	}
}

static void
request_free(struct pw_request *r)
{
	LIST_REMOVE(r, byid);
	explicit_bzero(r, sizeof(*r));
	free(r);
}

/* --- keeper: hashers --------------------------------------------------------- */

static void keeper_dispatch(struct keeper *k);
static void keeper_answer(struct keeper *k, const struct pwmsg_check *m, enum pwcheck_result r,
	bool hashed);

static void
hasher_free(void *arg)
{
	free(arg);
}

/* Unregisters and closes its socket (the hasher exits when it reads EOF)
 * and queues the release. Its checks must have been taken off first. */
static void
hasher_stop(struct hasher *h)
{
	if (h->stopped)
		return;
	h->stopped = true;
	loop_unwatch_closing(h->k->loop, &h->w);
	close(h->w.fd);
	TAILQ_REMOVE(&h->k->hashers, h, link);
	loop_release(h->k->loop, &h->rel, hasher_free, h);
}

static void hasher_on_io(struct loop *loop, unsigned events, void *arg);

/* Forks one hasher with the current table. */
static struct hasher *
hasher_spawn(struct keeper *k)
{
	struct hasher *h = calloc(1, sizeof(*h));
	int sv[2];

	if (!h)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		free(h);
		return NULL;
	}
	h->pid = fork();
	if (h->pid == 0) {
		close(sv[0]);
		hasher_main(k->users, sv[1]);
	}
	close(sv[1]);
	if (h->pid < 0) {
		close(sv[0]);
		free(h);
		return NULL;
	}
	h->k = k;
	h->gen = k->gen;
	TAILQ_INIT(&h->inflight);
	watcher_init(&h->w, sv[0], hasher_on_io, h);
	if (loop_watch(k->loop, &h->w, LOOP_READ) < 0) {
		close(sv[0]);
		free(h);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&k->hashers, h, link);
	log_info("auth: password hasher %ld started", (long)h->pid);
	return h;
}

/* Hashers of the current generation, as many as configured. */
static void
keeper_fill_hashers(struct keeper *k)
{
	unsigned have = 0;
	struct hasher *h;

	TAILQ_FOREACH(h, &k->hashers, link)
	have += h->gen == k->gen;
	while (have < k->opt.hashers && hasher_spawn(k))
		have++;
	if (have < k->opt.hashers && !timer_active(&k->respawn)) {
		log_warn("auth: starting a password hasher");
		timer_start(k->loop, &k->respawn, PWHELPER_RESPAWN_MS);
	}
}

static void
keeper_on_respawn(struct loop *loop, void *arg)
{
	struct keeper *k = arg;

	keeper_fill_hashers(k);
	keeper_dispatch(k);
}

/* A hasher's socket closed: it died (or was killed). Its checks go back to
 * the front of the queue for one more try each. */
static void
hasher_died(struct hasher *h)
{
	struct keeper *k = h->k;
	struct pw_request *r;
	unsigned retried = 0;

	while ((r = TAILQ_LAST(&h->inflight, pw_request_list))) {
		TAILQ_REMOVE(&h->inflight, r, link);
		if (r->cancelled || r->tries >= 2 || !keeper_enqueue(k, r, true)) {
			if (!r->cancelled)
				keeper_answer(k, &r->msg, PWCHECK_ERROR, false);
			request_free(r);
			continue;
		}
		retried++;
	}
	if (h->gen == k->gen)
		log_warnx("auth: password hasher %ld died; %u check(s) to try again", (long)h->pid,
			retried);
	hasher_stop(h);
	/* Not at once: a hasher killed at start would be restarted in a loop. */
	if (!timer_active(&k->respawn))
		timer_start(k->loop, &k->respawn,
			TAILQ_EMPTY(&k->hashers) ? PWHELPER_RESPAWN_MS / 10 : PWHELPER_RESPAWN_MS);
}

static void
hasher_on_io(struct loop *loop, unsigned events, void *arg)
{
	struct hasher *h = arg;
	struct keeper *k = h->k;
	struct pwmsg_verdict v;
	struct pw_request *r;
	ssize_t n = recv(h->w.fd, &v, sizeof(v), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n != (ssize_t)sizeof(v) || v.type != PWMSG_VERDICT) {
		hasher_died(h);
		return;
	}
	TAILQ_FOREACH(r, &h->inflight, link)
	if (r->msg.id == v.id)
		break;
	if (!r)
		return;
	TAILQ_REMOVE(&h->inflight, r, link);
	h->ninflight--;
	/* Verified against the current table: no hash next time. */
	if (v.result == PWCHECK_OK && h->gen == k->gen)
		auth_cache_store(k->users, r->msg.user, r->msg.pass);
	if (!r->cancelled)
		keeper_answer(k, &r->msg, (enum pwcheck_result)v.result, v.hashed);
	request_free(r);
	/* A retired generation exits once it holds nothing. */
	if (h->gen != k->gen && h->ninflight == 0)
		hasher_stop(h);
	keeper_dispatch(k);
}

/* --- keeper: checks ---------------------------------------------------------- */

static void
keeper_answer(struct keeper *k, const struct pwmsg_check *m, enum pwcheck_result r, bool hashed)
{
	struct pwmsg_verdict v = {
		.type = PWMSG_VERDICT,
		.result = r,
		.id = m->id,
		.hashed = hashed,
	};

	/* A network process that stopped reading is gone: its EOF follows. */
	(void)pwhelper_send(k->net.fd, &v, sizeof(v));
}

static struct hasher *
keeper_least_busy(struct keeper *k)
{
	struct hasher *h, *best = NULL;

	TAILQ_FOREACH(h, &k->hashers, link)
	if (h->gen == k->gen && h->ninflight < PWHELPER_DEPTH &&
		(!best || h->ninflight < best->ninflight))
		best = h;
	return best;
}

/* The groups take turns: the first check of the group at the head goes to
 * the least busy hasher, and the group to the tail. */
static void
keeper_dispatch(struct keeper *k)
{
	struct pw_group *g;
	struct hasher *h;

	while ((g = TAILQ_FIRST(&k->turns)) && (h = keeper_least_busy(k))) {
		struct pw_request *r = TAILQ_FIRST(&g->waiting);
		bool more = TAILQ_NEXT(r, link) != NULL;

		keeper_dequeue(k, r); /* drops the group when it was its last */
		if (more) {
			TAILQ_REMOVE(&k->turns, g, turn);
			TAILQ_INSERT_TAIL(&k->turns, g, turn);
		}
		r->tries++;
		if (!pwhelper_send(h->w.fd, &r->msg, sizeof(r->msg))) {
			(void)keeper_enqueue(k, r, true);
			hasher_died(h);
			continue;
		}
		TAILQ_INSERT_TAIL(&h->inflight, r, link);
		h->ninflight++;
	}
}

/* A check from the network: answered here when no hash is needed. */
static void
keeper_check(struct keeper *k, const struct pwmsg_check *m)
{
	struct pw_request *r;
	bool hashed = false;
	enum auth_result ar;
	char user[PWHELPER_FIELD_MAX + 1], pass[PWHELPER_FIELD_MAX + 1];

	memcpy(user, m->user, m->ulen);
	user[m->ulen] = '\0';
	memcpy(pass, m->pass, m->plen);
	pass[m->plen] = '\0';
	ar = auth_check_ex(k->users, user, pass, false, &hashed);
	explicit_bzero(pass, sizeof(pass));
	if (ar != AUTH_RESULT_NEED_HASH) {
		keeper_answer(k, m,
			ar == AUTH_RESULT_OK && strlen(user) == m->ulen ? PWCHECK_OK : PWCHECK_FAIL,
			false);
		return;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		keeper_answer(k, m, PWCHECK_ERROR, false);
		return;
	}
	r->msg = *m;
	/* The fields hold ulen and plen bytes: the rest is the sender's. */
	r->msg.user[r->msg.ulen] = '\0';
	r->msg.pass[r->msg.plen] = '\0';
	LIST_INSERT_HEAD(&k->ids[pw_hash(&m->id, sizeof(m->id))], r, byid);
	if (!keeper_enqueue(k, r, false)) {
		keeper_answer(k, m, PWCHECK_ERROR, false);
		request_free(r);
		return;
	}
	keeper_dispatch(k);
}

/* The client left: a check still waiting is dropped (no hash for nobody),
 * one at a hasher is answered to nobody. */
static void
keeper_cancel(struct keeper *k, uint64_t id)
{
	struct pw_request *r;

	LIST_FOREACH(r, &k->ids[pw_hash(&id, sizeof(id))], byid)
	if (r->msg.id == id)
		break;
	if (!r)
		return;
	if (r->group) {
		keeper_dequeue(k, r);
		request_free(r);
	} else {
		r->cancelled = true;
	}
}

/* Reads the configuration again; the old hashers retire. */
static void
keeper_reload(struct keeper *k)
{
	struct pwmsg_reloaded rep = { .type = PWMSG_RELOADED };
	struct config *cfg = config_load(k->opt.path, k->opt.explicit_path, rep.message,
		sizeof(rep.message));
	struct hasher *h, *next;

	if (cfg) {
		auth_table_inherit_cache(cfg->users, k->users);
		auth_table_prepare(cfg->users);
		if (k->cfg)
			config_unref(k->cfg);
		k->cfg = cfg;
		k->users = cfg->users;
		k->gen++;
		rep.ok = 1;
		snprintf(rep.message, sizeof(rep.message), "%zu user(s)",
			auth_table_count(k->users));
		for (h = TAILQ_FIRST(&k->hashers); h; h = next) {
			next = TAILQ_NEXT(h, link);
			if (h->ninflight == 0)
				hasher_stop(h);
		}
		keeper_fill_hashers(k);
	}
	(void)pwhelper_send(k->net.fd, &rep, sizeof(rep));
}

static void
keeper_on_net(struct loop *loop, unsigned events, void *arg)
{
	struct keeper *k = arg;
	struct pwmsg_check m;
	ssize_t n = recv(k->net.fd, &m, sizeof(m), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n >= (ssize_t)sizeof(uint32_t) && m.type == PWMSG_RELOAD) {
		keeper_reload(k);
		return;
	}
	if (n == (ssize_t)sizeof(struct pwmsg_cancel) && m.type == PWMSG_CANCEL) {
		struct pwmsg_cancel c;
		memcpy(&c, &m, sizeof(c));
		keeper_cancel(k, c.id);
		return;
	}
	/* ulen and plen are one byte: they index the fields' last byte at most. */
	if (n == (ssize_t)sizeof(m) && m.type == PWMSG_CHECK) {
		keeper_check(k, &m);
		explicit_bzero(&m, sizeof(m));
		return;
	}
	/* EOF: the network process stopped (or died); everyone exits. */
	_exit(0);
}

static void
keeper_on_child(struct loop *loop, int signo, void *arg)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (WIFSIGNALED(status))
			log_warnx("auth: password hasher %ld killed by signal %d", (long)pid,
				WTERMSIG(status));
}

static void __attribute__((noreturn))
keeper_main(struct auth_table *users, const struct pwhelper_options *opt, int fd)
{
	struct keeper k;
	char err[512];

	pwhelper_child_setup(fd);
	if (getrandom(pw_hash_key, sizeof(pw_hash_key), 0) != (ssize_t)sizeof(pw_hash_key))
		_exit(1);
	memset(&k, 0, sizeof(k));
	k.opt = *opt;
	if (!(k.loop = loop_new()))
		_exit(1);
	if (!users) {
		if (!(k.cfg = config_load(opt->path, opt->explicit_path, err, sizeof(err)))) {
			log_errorx("auth: password keeper: %s", err);
			_exit(1);
		}
		users = k.cfg->users;
	}
	k.users = users;
	auth_table_prepare(k.users);
	TAILQ_INIT(&k.hashers);
	TAILQ_INIT(&k.turns);
	timer_init(&k.respawn, keeper_on_respawn, &k);
	watcher_init(&k.net, PWHELPER_FD, keeper_on_net, &k);
	if (loop_watch(k.loop, &k.net, LOOP_READ) < 0 ||
		loop_signal(k.loop, SIGCHLD, keeper_on_child, &k) < 0)
		_exit(1);
	keeper_fill_hashers(&k);
	(void)loop_run(k.loop);
	_exit(0);
}

int
pwhelper_start(struct auth_table *users, const struct pwhelper_options *opt, pid_t *pid)
{
	int sv[2], saved;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	*pid = fork();
	if (*pid == 0) {
		close(sv[0]);
		keeper_main(users, opt, sv[1]);
	}
	saved = errno;
	close(sv[1]);
	if (*pid < 0) {
		close(sv[0]);
		errno = saved;
		return -1;
	}
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
		saved = errno;
		close(sv[0]);
		errno = saved;
		return -1;
	}
	return sv[0];
}
