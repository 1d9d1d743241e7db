/*
 * it_scale_util: what the scaling tests (test_scale.c) need besides the
 * harness: a process's CPU time and children from /proc, a bounded HTTP
 * GET with Prometheus sample lookup, a target that reads a fixed amount
 * and answers twice as much (so the two byte counters differ), and running
 * a helper program (HAProxy) in the background with its output in a file.
 */
#ifndef SOCKS5D_IT_SCALE_UTIL_H
#define SOCKS5D_IT_SCALE_UTIL_H

#include "harness.h"

#include <sys/types.h>

/* utime + stime of pid in milliseconds, -1 when it cannot be read. */
long long it_scale_cpu_ms(pid_t pid);
/* The children of pid (from /proc/PID/stat ppid fields), at most cap.
 * Returns how many were found. */
int it_scale_children(pid_t pid, pid_t *out, int cap);
/* Whether pid has exited (gone, or a zombie: its descriptors are closed). */
bool it_scale_pid_gone(pid_t pid);
/* Descriptors open in pid, -1 when /proc/PID/fd cannot be read. */
int it_scale_fd_count(pid_t pid);

/* Sends request to 127.0.0.1:port and reads until EOF (at most timeout_ms).
 * Returns the status code of the answer, 0 when the connection closed
 * without one, -1 on error. *resp (malloc'd, NUL-terminated, the caller
 * frees) gets the whole answer when resp is not NULL. */
int it_scale_http(uint16_t port, const char *request, char **resp, int timeout_ms);
/* The value of the sample whose name and labels are exactly key
 * ("socks5d_bytes_total{direction=\"up\"}") in an exposition. */
bool it_scale_metric(const char *text, const char *key, unsigned long long *v);

/* A target on 127.0.0.1 that reads IT_SCALE_UP bytes, answers
 * IT_SCALE_DOWN bytes and closes, one connection after another. */
#define IT_SCALE_UP 1000
#define IT_SCALE_DOWN 2000
#define IT_SCALE_DOWN_SEED 0x0d0eULL /* the answer is this xorshift stream */
int it_scale_updown_start(struct it_target *t);
void it_scale_updown_stop(struct it_target *t);

/* Like it_fixture_start (no auth), but the daemon is started with
 * RLIMIT_NOFILE soft = hard = nofile, set in the child before exec, and
 * only on 127.0.0.1. Returns 0 or -1 (printed). */
int it_scale_fixture_start_nofile(void **state, const char *config_lines, unsigned nofile);

/* Starts argv in the background with stdin /dev/null and stdout/stderr
 * appended to log_path; it dies with the test runner. Returns the pid or
 * -1. */
pid_t it_scale_spawn(char *const argv[], const char *log_path);
/* SIGTERM, bounded wait, then SIGKILL; reaps. */
void it_scale_stop(pid_t *pid);

#endif
