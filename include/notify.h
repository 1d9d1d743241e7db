/*
 * notify: the systemd service protocol without libsystemd — sd_notify
 * messages over $NOTIFY_SOCKET (abstract names included), the watchdog
 * keep-alive, and the sockets passed by socket activation ($LISTEN_FDS).
 */
#ifndef SOCKS5D_NOTIFY_H
#define SOCKS5D_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* Reads and unsets NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID. Returns
 * true when a notify socket is configured. */
bool notify_init(void);
/* Forgets the notify socket (in worker processes: only the supervisor
 * talks to systemd). */
void notify_disable(void);
/* Sends one datagram of newline-separated assignments ("READY=1"). No-op
 * without NOTIFY_SOCKET. Returns 0 or -1 with errno. */
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "RELOADING=1" with MONOTONIC_USEC, as Type=notify-reload expects. */
int notify_reloading(void);
/* The watchdog interval in microseconds (0 when not requested). */
uint64_t notify_watchdog_usec(void);
/* When the watchdog was requested: sends WATCHDOG=1 now and then at half
 * the interval from the loop's own timer, so a stuck loop stops the
 * keep-alives. notify_watchdog_stop disarms it. */
void notify_watchdog_start(struct loop *loop);
void notify_watchdog_stop(struct loop *loop);

/* Socket activation: the number of inherited fds (starting at 3) meant for
 * this process, 0 when none; they are made nonblocking and close-on-exec,
 * and LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES are unset. */
int notify_listen_fds(void);

#endif
