/*
 * fuzz_config: the config parser on arbitrary text. No logic of its own:
 * the input becomes a NUL-terminated string for config_parse_string, and a
 * config that parses is dumped, which walks every field.
 *
 * The name puts the "config file" in a directory that does not exist, so a
 * relative users-file path never opens anything. An absolute one can name a
 * real file, which is harmless: users-file only reads, only regular files,
 * lines of bounded length, and stops at the first bad line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct config *c = NULL;
	char err[512];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (config_parse_string(text, "/nonexistent-socks5d-fuzz/fuzz.conf", &c, err,
		    sizeof(err)) == 0) {
		if (devnull)
			config_dump(c, devnull);
		config_unref(c);
	}
	free(text);
	return 0;
}
