/*
 * passwd: `socks5d passwd`, the users-file tool. Reads a password (twice
 * from a terminal without echo, once from a pipe), hashes it with
 * crypt_gensalt (yescrypt, or SHA-512 with -m sha512) and adds or replaces
 * the user's "name:hash" line in a users file atomically, or prints the
 * line; -D deletes a user. Runs before, and apart from, the daemon.
 */
#ifndef SOCKS5D_PASSWD_H
#define SOCKS5D_PASSWD_H

/*
 * The command: argv[0] is "passwd", then
 *   [-m yescrypt|sha512] [-f USERS-FILE] NAME
 *   -D -f USERS-FILE NAME
 * Returns the exit status: 0 done, 1 failed (a message on stderr; the file
 * is then unchanged), 2 bad usage.
 */
int passwd_main(int argc, char **argv);

#endif
