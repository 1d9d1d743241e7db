/*
 * auth: the user table (RFC 1929 username/password) and the password check.
 * Secrets are crypt(3) hashes ($6$, $y$, $5$, ...) or plain text; checks run
 * in constant time with respect to the secret.
 */
#ifndef SOCKS5D_AUTH_H
#define SOCKS5D_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct auth_table;

struct auth_table *auth_table_new(void);
void auth_table_free(struct auth_table *t);
/* Adds a user. Returns 0, or -1 with a message in err (duplicate name, empty
 * or over-long name/secret). *plaintext is set when the secret is not a
 * crypt(3) hash (the caller warns). */
int auth_table_add(struct auth_table *t, const char *name, const char *secret, bool *plaintext,
	char *err, size_t errlen);
size_t auth_table_count(const struct auth_table *t);
/* How many of those users have a plain-text secret (config counts them for
 * the startup warning, users-file included). */
size_t auth_table_plaintext_count(const struct auth_table *t);
bool auth_table_has(const struct auth_table *t, const char *name);
/* auth_table_add with where ("FILE:LINE") recorded for messages about the
 * user (auth_table_each_slow). */
int auth_table_add_at(struct auth_table *t, const char *name, const char *secret, const char *where,
	bool *plaintext, char *err, size_t errlen);
/* Reads "name:secret" lines (blank lines and # comments allowed). Returns 0,
 * or -1 with "PATH:LINE: message" in err. */
int auth_table_load_file(struct auth_table *t, const char *path, char *err, size_t errlen);
/* True when user exists and pass matches its secret. Takes about the same
 * time whether or not the user exists. */
bool auth_check(struct auth_table *t, const char *user, const char *pass);

enum auth_result {
	AUTH_RESULT_OK = 0,
	AUTH_RESULT_FAIL,
	AUTH_RESULT_NEED_HASH, /* only with may_hash false: a crypt(3) run is needed */
};
/* auth_check with a say in the expensive part: with may_hash false, a
 * check that would run crypt(3) (unknown user, hashed secret not cached)
 * answers AUTH_RESULT_NEED_HASH at once. *hashed tells whether crypt ran. */
enum auth_result auth_check_ex(struct auth_table *t, const char *user, const char *pass,
	bool may_hash, bool *hashed);

/* For the password helpers (pwhelper). */

/* Remembers pass as verified for user (a check run elsewhere succeeded):
 * auth_check_ex then accepts it without crypt until another password
 * verifies. No effect for an unknown or plain-text user. */
void auth_cache_store(struct auth_table *t, const char *user, const char *pass);
/* A reloaded table takes old's cache: its key, and the verified password of
 * every user whose secret is unchanged. */
void auth_table_inherit_cache(struct auth_table *t, const struct auth_table *old);
/* Measures one verification of each kind of hash in the table (algorithm
 * and cost; milliseconds each, once per kind) and makes unknown users cost
 * what the most expensive kind costs. */
void auth_table_prepare(struct auth_table *t);
/* Calls cb for each hashed user whose verification took more than min_ms
 * in auth_table_prepare. */
void auth_table_each_slow(const struct auth_table *t, unsigned min_ms,
	void (*cb)(const char *where, const char *name, unsigned ms, void *arg), void *arg);
/* Wipes every secret and the cache, keeping the names (and the count): for
 * the network-facing process, which asks the helpers instead. */
void auth_table_forget_secrets(struct auth_table *t);

#endif
