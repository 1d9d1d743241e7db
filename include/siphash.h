/*
 * siphash: SipHash-2-4 (Aumasson, Bernstein 2012), 64-bit output: a keyed
 * hash for tables whose keys clients choose (addresses, user names), so
 * they cannot be made to collide, and for the tags of verified passwords.
 */
#ifndef SOCKS5D_SIPHASH_H
#define SOCKS5D_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data, size_t len);

#endif
