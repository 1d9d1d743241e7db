/*
 * ctl: `socks5d ctl`, the client of the control socket. It finds the socket
 * (-s, or the `control` line of the configuration file; with workers, each
 * worker's), sends one request and prints the answer's records to standard
 * output. Runs apart from the daemon: it may block (with timeouts).
 */
#ifndef SOCKS5D_CTL_H
#define SOCKS5D_CTL_H

/*
 * The command: argv[0] is "ctl", then
 *   [-f FILE] [-s SOCKET] [-w WORKER] COMMAND [ARG] [--json]
 * COMMAND: sessions | users | clients | kill ID | quota-reset [--client] NAME
 * | reload. Returns the exit status: 0 done, 1 failed (the daemon's error or
 * no daemon; a message on stderr), 2 bad usage.
 */
int ctl_main(int argc, char **argv);

#endif
