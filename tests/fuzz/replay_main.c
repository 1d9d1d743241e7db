/*
 * Replay driver: runs a fuzz target's LLVMFuzzerTestOneInput over corpus
 * files without libFuzzer, so `make test` exercises every target under gcc
 * and the sanitizers. Each argument is a file or a directory of files (not
 * recursive). Prints one line with the number of inputs run; exits 1 when
 * an argument cannot be read, so a mistyped corpus path is not a silent pass.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file; returns 0, or -1 when it cannot be read. */
static int
replay_file(const char *path)
{
	FILE *f;
	uint8_t *data = NULL;
	long len;
	int ret = -1;

	f = fopen(path, "rb");
	if (f == NULL)
		goto out;
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	/* Exactly len bytes so an over-read hits the redzone; malloc(0)
	 * may return NULL, so an empty input gets one unused byte. */
	data = malloc(len > 0 ? (size_t)len : 1);
	if (data == NULL)
		goto out;
	if (len > 0 && fread(data, 1, (size_t)len, f) != (size_t)len)
		goto out;
	LLVMFuzzerTestOneInput(data, (size_t)len);
	ret = 0;
out:
	if (ret != 0)
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
	free(data);
	if (f != NULL)
		fclose(f);
	return ret;
}

/* Runs every regular file in dir; returns how many, or -1 on error. */
static long
replay_dir(const char *dir)
{
	DIR *d;
	struct dirent *de;
	char path[4096];
	struct stat st;
	long count = 0;

	d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
			continue;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (replay_file(path) != 0) {
			count = -1;
			break;
		}
		count++;
	}
	closedir(d);
	return count;
}

int
main(int argc, char **argv)
{
	struct stat st;
	long total = 0, n;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s corpus-dir-or-file ...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode))
			n = replay_dir(argv[i]);
		else
			n = replay_file(argv[i]) == 0 ? 1 : -1;
		if (n < 0)
			return 1;
		total += n;
	}
	printf("%s: replayed %ld inputs\n", argv[0], total);
	return 0;
}
