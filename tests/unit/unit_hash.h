/*
 * unit_hash: FNV-1a 64 for the unit tests that check a stream arrived
 * intact (test_relay, test_udpassoc). Start from UNIT_FNV_OFFSET.
 */
#ifndef SOCKS5D_UNIT_HASH_H
#define SOCKS5D_UNIT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define UNIT_FNV_OFFSET 0xcbf29ce484222325ULL

static inline uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#endif
