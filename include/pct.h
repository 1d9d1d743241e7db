/*
 * pct: percent-encoding of any bytes into one word of printable ASCII, for
 * the lines of the quota state file and of the control protocol, where a
 * user name may hold spaces or any other byte. Bytes 0x21..0x7e other than
 * '%' stand for themselves; every other byte is %HH. Pure.
 */
#ifndef SOCKS5D_PCT_H
#define SOCKS5D_PCT_H

#include <stddef.h>
#include <stdint.h>

/* Room pct_encode needs for n bytes, with the NUL. */
#define PCT_ENCODED_SIZE(n) (3 * (n) + 1)

/* Writes the word for p[0..n) and a NUL into out (cap bytes; at least
 * PCT_ENCODED_SIZE(n) for all of it, else it is cut at a whole escape).
 * Returns out. */
char *pct_encode(const uint8_t *p, size_t n, char *out, size_t cap);
/* Decodes the word s[0..len) into out (at most cap bytes). Returns the
 * length, or -1 for a byte outside 0x21..0x7e, a bad or short escape, or
 * more than cap bytes. */
long pct_decode(const char *s, size_t len, uint8_t *out, size_t cap);

#endif
