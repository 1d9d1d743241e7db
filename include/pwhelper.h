/*
 * pwhelper: the processes that hold the password hashes (privilege
 * separation, as in OpenSSH and OpenSMTPD). The keeper, forked from the
 * network-facing process, holds the user table and the cache of verified
 * passwords and answers what needs no hash (a cached password, a plain-text
 * secret); it forks `auth-workers` hashers at the lowest CPU priority, which
 * run crypt(3). Checks that need a hash wait in the keeper per client
 * address group, the groups taking turns, so a flood from some addresses
 * delays another by one check per turn, and a cached password is answered
 * at once whatever waits. The network process keeps no secret: it sends each check to
 * the keeper over one SOCK_SEQPACKET socket and gets the verdict back
 * (pwcheck). This header is the wire between the two.
 */
#ifndef SOCKS5D_PWHELPER_H
#define SOCKS5D_PWHELPER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct auth_table;

/* RFC 1929 §2: one byte of length each. */
#define PWHELPER_FIELD_MAX 255

enum pwmsg_type {
	PWMSG_CHECK = 1, /* network -> keeper -> hasher */
	PWMSG_VERDICT,   /* hasher -> keeper -> network */
	PWMSG_RELOAD,    /* network -> keeper: read the configuration again */
	PWMSG_RELOADED,  /* keeper -> network: ok, and a message */
	PWMSG_CANCEL,    /* network -> keeper: the client left, drop the check */
};

/* Whose check it is: the client's address family and address, IPv6 cut to
 * the prefix (ipv6-prefix). Checks waiting for a hasher take turns by it. */
#define PWHELPER_GROUP_LEN 17

enum pwcheck_result {
	PWCHECK_OK = 0, /* the password is right */
	PWCHECK_FAIL,   /* checked, and wrong (or no such user) */
	PWCHECK_ERROR,  /* could not be checked (a helper died twice) */
};

struct pwmsg_check {
	uint32_t type; /* PWMSG_CHECK */
	uint8_t ulen, plen;
	uint8_t group[PWHELPER_GROUP_LEN];
	uint8_t pad;
	uint64_t id;
	char user[PWHELPER_FIELD_MAX + 1];
	char pass[PWHELPER_FIELD_MAX + 1];
};

struct pwmsg_cancel {
	uint32_t type; /* PWMSG_CANCEL */
	uint32_t pad;
	uint64_t id;
};

struct pwmsg_verdict {
	uint32_t type;   /* PWMSG_VERDICT */
	uint32_t result; /* enum pwcheck_result */
	uint64_t id;
	uint32_t hashed; /* crypt(3) ran for it */
	uint32_t pad;
};

struct pwmsg_reloaded {
	uint32_t type; /* PWMSG_RELOADED */
	uint32_t ok;
	char message[256];
};

struct pwhelper_options {
	const char *path;   /* configuration file, read again on PWMSG_RELOAD */
	bool explicit_path; /* -f given (config_load's rule for a missing file) */
	unsigned hashers;   /* auth-workers */
};

/* Forks the keeper. users: the table it starts with (the caller's copy is
 * for the caller to wipe), or NULL to read it from opt->path. Returns the
 * network end of the keeper's socket (nonblocking, close-on-exec) with the
 * keeper's pid in *pid, or -1 with errno. The keeper exits when that socket
 * closes; its hashers exit with it. */
int pwhelper_start(struct auth_table *users, const struct pwhelper_options *opt, pid_t *pid)
	__attribute__((warn_unused_result));

#endif
