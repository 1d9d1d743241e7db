/*
 * fuzz_dns_response: dns_parse_response on arbitrary bytes. The id is taken
 * from the message itself so the fuzzer gets past the id check; the
 * question is the one the seeds carry (www.example.com), asked as A and
 * AAAA. An accepted message must respect the documented bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_TYPE_A, DNS_TYPE_AAAA };
	uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;

	for (size_t i = 0; i < 2; i++) {
		struct dns_response r;

		if (dns_parse_response(data, size, id, "www.example.com", types[i], &r) == DNS_OK &&
			(r.naddrs > DNS_MAX_ADDRS || r.cnames > DNS_MAX_CNAMES))
			abort();
	}
	return 0;
}
