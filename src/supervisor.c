/*
 * supervisor: a small parent process with its own event loop (signals,
 * readiness pipes, timers) and no client traffic. Workers each run the
 * whole single-threaded daemon on SO_REUSEPORT listeners; the kernel
 * spreads connections over them. A worker that dies is restarted (after a
 * pause when it died young, so a crash loop cannot spin); workers die with
 * the supervisor (PR_SET_PDEATHSIG).
 */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "notify.h"
#include "userswatch.h"

#define RESTART_PAUSE_MS 1000 /* a worker that lived shorter than this waits */
#define KILL_GRACE_MS 5000    /* after shutdown-timeout: SIGKILL the rest */

struct worker {
	pid_t pid;    /* 0 when not running */
	int ready_fd; /* read end of the readiness pipe, -1 when closed */
	struct watcher w;
	bool ready;
	uint64_t started_ms;
	uint64_t restart_at_ms; /* when a dead worker may start again */
};

struct supervisor {
	struct loop *loop;
	struct config *cfg;
	const struct supervisor_options *so;
	struct worker workers[CONFIG_MAX_WORKERS];
	unsigned n;
	bool announced; /* READY=1 sent */
	bool stopping;
	struct timer restart_timer;
	struct timer kill_timer;
	struct userswatch *users; /* users-file ... watch: reload on change */
};

static void supervisor_spawn(struct supervisor *s, unsigned i);

static unsigned
running_count(const struct supervisor *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->n; i++)
		n += s->workers[i].pid > 0;
	return n;
}

static void
send_status(const struct supervisor *s)
{
	(void)notify_send("STATUS=%s%u of %u workers running", s->stopping ? "stopping: " : "",
		running_count(s), s->n);
}

static void
close_ready(struct supervisor *s, struct worker *w)
{
	if (w->ready_fd < 0)
		return;
	loop_unwatch(s->loop, &w->w);
	close(w->ready_fd);
	w->ready_fd = -1;
}

static void
on_ready(struct loop *loop, unsigned events, void *arg)
{
	struct worker *w = arg;
	char b;
	ssize_t n;

	n = read(w->ready_fd, &b, 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 1)
		w->ready = true;
	/* One byte or EOF: either way the pipe has said all it will. */
	loop_unwatch(loop, &w->w);
	close(w->ready_fd);
	w->ready_fd = -1;
}

static void
check_all_ready(struct supervisor *s)
{
	if (s->announced || s->stopping)
		return;
	for (unsigned i = 0; i < s->n; i++)
		if (!s->workers[i].ready)
			return;
	s->announced = true;
	log_info("all %u workers ready", s->n);
	(void)notify_send("READY=1");
	send_status(s);
}

/* Readiness pipes are watched with the worker as arg; this wrapper gives
 * the callback the supervisor too, by looking it up in a static. */
static struct supervisor *the_supervisor;

static void
on_ready_cb(struct loop *loop, unsigned events, void *arg)
{
	on_ready(loop, events, arg);
	check_all_ready(the_supervisor);
}

static void
supervisor_spawn(struct supervisor *s, unsigned i)
{
	struct worker *w = &s->workers[i];
	pid_t parent = getpid(), pid;
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_warn("worker %u: pipe", i);
		timer_start(s->loop, &s->restart_timer, RESTART_PAUSE_MS);
		return;
	}
	pid = fork();
	if (pid < 0) {
		log_warn("worker %u: fork", i);
		close(p[0]);
		close(p[1]);
		timer_start(s->loop, &s->restart_timer, RESTART_PAUSE_MS);
		return;
	}
	if (pid == 0) {
		struct config *cfg = config_ref(s->cfg);
		int rc, fl;

		/* The child: nothing of the supervisor's loop survives. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(0);
		close(p[0]);
		for (unsigned j = 0; j < s->n; j++)
			if (s->workers[j].ready_fd >= 0)
				close(s->workers[j].ready_fd);
		loop_free(s->loop);
		fl = fcntl(p[1], F_GETFL);
		if (fl >= 0)
			(void)fcntl(p[1], F_SETFL, fl & ~O_NONBLOCK);
		rc = s->so->run_worker(cfg, s->so, i, p[1]);
		config_unref(s->cfg);
		_exit(rc);
	}
	close(p[1]);
	w->pid = pid;
	w->ready = false;
	w->ready_fd = p[0];
	w->started_ms = loop_now(s->loop);
	watcher_init(&w->w, p[0], on_ready_cb, w);
	if (loop_watch(s->loop, &w->w, LOOP_READ) < 0) {
		log_warn("worker %u: epoll_ctl", i);
		close_ready(s, w);
	}
	log_info("worker %u started (pid %d)", i, (int)pid);
}

static void
on_restart_timer(struct loop *loop, void *arg)
{
	struct supervisor *s = arg;

	uint64_t now = loop_now(loop), next = 0;

	if (s->stopping)
		return;
	for (unsigned i = 0; i < s->n; i++) {
		struct worker *w = &s->workers[i];
		if (w->pid != 0)
			continue;
		if (w->restart_at_ms <= now) {
			supervisor_spawn(s, i);
		} else if (next == 0 || w->restart_at_ms < next) {
			next = w->restart_at_ms;
		}
	}
	/* Workers that died young wait for their own time. */
	if (next && !timer_active(&s->restart_timer))
		timer_start(loop, &s->restart_timer, next - now);
}

static void
signal_workers(struct supervisor *s, int signo)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->workers[i].pid > 0)
			(void)kill(s->workers[i].pid, signo);
}

static void
on_sigchld(struct loop *loop, int signo, void *arg)
{
	struct supervisor *s = arg;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (unsigned i = 0; i < s->n; i++) {
			struct worker *w = &s->workers[i];
			if (w->pid != pid)
				continue;
			w->pid = 0;
			w->ready = false;
			close_ready(s, w);
			if (WIFSIGNALED(status))
				log_warnx("worker %u (pid %d) killed by signal %d", i, (int)pid,
					WTERMSIG(status));
			else if (!s->stopping || WEXITSTATUS(status) != 0)
				log_warnx("worker %u (pid %d) exited with status %d", i, (int)pid,
					WEXITSTATUS(status));
			/* A worker that died young waits, so a crash loop
			 * cannot spin the supervisor. */
			w->restart_at_ms = loop_now(loop) - w->started_ms < RESTART_PAUSE_MS
				? loop_now(loop) + RESTART_PAUSE_MS
				: loop_now(loop);
		}
	}
	if (s->stopping) {
		if (running_count(s) == 0)
			loop_stop(loop);
		return;
	}
	on_restart_timer(loop, s);
	send_status(s);
}

static void
on_kill_timer(struct loop *loop, void *arg)
{
	struct supervisor *s = arg;

	log_warnx("shutdown: %u workers still running, killing them", running_count(s));
	signal_workers(s, SIGKILL);
}

static void
on_stop(struct loop *loop, int signo, void *arg)
{
	struct supervisor *s = arg;

	if (!s->stopping) {
		s->stopping = true;
		(void)notify_send("STOPPING=1");
		log_info("%s: stopping %u workers", strsignal(signo), running_count(s));
		timer_stop(loop, &s->restart_timer);
		timer_start(loop, &s->kill_timer,
			(uint64_t)s->cfg->shutdown_timeout * 1000u + KILL_GRACE_MS);
	}
	/* A second signal is passed on too: the workers then stop at once. */
	signal_workers(s, SIGTERM);
	if (running_count(s) == 0)
		loop_stop(loop);
}

static void supervisor_reload(void *arg);

static void
on_hup(struct loop *loop, int signo, void *arg)
{
	supervisor_reload(arg);
}

/* SIGHUP, and a changed users file under watch: checked here, then passed
 * on to the workers as SIGHUP. */
static void
supervisor_reload(void *arg)
{
	struct supervisor *s = arg;
	struct config *cfg;
	char err[1024];

	if (s->stopping)
		return;
	(void)notify_reloading();
	/* Checked here first: a bad file leaves every worker untouched. */
	cfg = config_load(s->so->path, s->so->explicit_path, err, sizeof(err));
	if (!cfg) {
		log_errorx("reload failed, keeping the running configuration: %s", err);
		(void)notify_send("READY=1\nSTATUS=reload failed: %s", err);
		return;
	}
	if (cfg->workers != s->n)
		log_warnx("reload: 'workers %u' takes effect at the next restart (running %u)",
			cfg->workers, s->n);
	log_set_level(s->so->debug ? LOG_LVL_DEBUG : cfg->log_level);
	config_unref(s->cfg);
	s->cfg = cfg; /* restarted workers start with it */
	userswatch_sync(&s->users, s->loop, cfg->users_file, cfg->users_file_watch,
		supervisor_reload, s);
	signal_workers(s, SIGHUP);
	log_info("reload: passed to %u workers", running_count(s));
	(void)notify_send("READY=1");
	send_status(s);
}

static void
on_usr1(struct loop *loop, int signo, void *arg)
{
	signal_workers(arg, signo);
}

int
supervisor_run(struct config *cfg, const struct supervisor_options *so)
{
	struct supervisor *s = calloc(1, sizeof(*s));

	if (!s)
		fatalx("out of memory");
	the_supervisor = s;
	s->cfg = cfg;
	s->so = so;
	s->n = cfg->workers;
	s->loop = loop_new();
	if (!s->loop)
		fatal("epoll");
	log_set_tag("supervisor");
	timer_init(&s->restart_timer, on_restart_timer, s);
	timer_init(&s->kill_timer, on_kill_timer, s);
	for (unsigned i = 0; i < s->n; i++)
		s->workers[i].ready_fd = -1;
	if (loop_signal(s->loop, SIGCHLD, on_sigchld, s) < 0 ||
		loop_signal(s->loop, SIGTERM, on_stop, s) < 0 ||
		loop_signal(s->loop, SIGINT, on_stop, s) < 0 ||
		loop_signal(s->loop, SIGHUP, on_hup, s) < 0 ||
		loop_signal(s->loop, SIGUSR1, on_usr1, s) < 0)
		fatal("signalfd");
	for (unsigned i = 0; i < s->n; i++)
		supervisor_spawn(s, i);
	userswatch_sync(&s->users, s->loop, cfg->users_file, cfg->users_file_watch,
		supervisor_reload, s);
	notify_watchdog_start(s->loop);
	if (loop_run(s->loop) < 0)
		fatalx("event loop failed");
	log_info("all workers stopped");
	userswatch_stop(s->users);
	notify_watchdog_stop(s->loop);
	loop_free(s->loop);
	config_unref(s->cfg);
	free(s);
	return 0;
}
