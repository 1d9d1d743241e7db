/*
 * strnum: the one strict decimal parser. A number is one or more ASCII
 * digits and nothing else: no sign, no blanks, no "0x", no suffix. Leading
 * zeros are accepted ("007" is 7; the config file always took them). The
 * value is range-checked, and a result is always a status, never a bare
 * number that might be an error. The other direction too: the name of a
 * number from a table (status and code names for logs). Pure: no errno,
 * no locale, no logging.
 */
#ifndef SOCKS5D_STRNUM_H
#define SOCKS5D_STRNUM_H

#include <stddef.h>
#include <stdint.h>

enum strnum_status {
	STRNUM_OK = 0,
	STRNUM_EMPTY,       /* no characters at all */
	STRNUM_NOT_DECIMAL, /* a character other than '0'..'9' anywhere */
	STRNUM_RANGE,       /* digits only, but below min or above max (2^64 and up included) */
};

/*
 * Parses the NUL-terminated s. Returns STRNUM_OK with *out set to a value
 * in min..max, or the reason it is not one; *out is untouched on error.
 * When s both holds a non-digit and is out of range, the answer is
 * STRNUM_NOT_DECIMAL: what was written is not a number at all.
 */
enum strnum_status strnum_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
	__attribute__((warn_unused_result));
/* The same for the len bytes at s, which need not be NUL-terminated (a
 * field inside a received buffer). len 0 is STRNUM_EMPTY. */
enum strnum_status strnum_parse_u64_span(const char *s, size_t len, uint64_t min, uint64_t max,
	uint64_t *out) __attribute__((warn_unused_result));
/* strnum_parse_u64 into an unsigned (ports, seconds, counts). */
enum strnum_status strnum_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
	__attribute__((warn_unused_result));
/* "ok", "empty", "not a decimal number", "out of range". */
const char *strnum_status_str(enum strnum_status st);

/*
 * names[i] from a table of n names indexed by value (designated
 * initialisers, so a name cannot drift from its constant), or dflt when i
 * is past the end or names[i] is a hole. Never NULL when dflt is not.
 */
const char *strnum_name(const char *const *names, size_t n, size_t i, const char *dflt);
/* strnum_name over a whole array: STRNUM_NAME(status_names, st, "unknown"). */
#define STRNUM_NAME(names, i, dflt) \
	strnum_name((names), sizeof(names) / sizeof((names)[0]), (size_t)(i), (dflt))

#endif
