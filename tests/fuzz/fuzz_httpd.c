/*
 * fuzz_httpd: libFuzzer target for httpd_parse, the metrics listener's request parser.
 *
 * The input is what a client sent so far, copied to a buffer of its exact
 * size (ASan sees a read past it). Invariants, each an abort() when broken:
 *  - a request has a method of 1 to 15 capital letters and a path that starts
 *    with '/', holds no '?', space or control byte, and fits its buffer;
 *  - "need more" only below the size cap, "too large" only at it;
 *  - feeding the same bytes split in two never changes the answer for the
 *    whole (the responder parses again after each read).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum httpd_parsed
parse(const uint8_t *data, size_t size, char *method, char *path, size_t pathlen)
{
	char *copy = malloc(size > 0 ? size : 1);
	enum httpd_parsed r;

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	r = httpd_parse(copy, size, method, 16, path, pathlen);
	free(copy);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char method[16], path[64], m2[16], p2[64];
	enum httpd_parsed r, r2;

	if (size > HTTPD_MAX_REQUEST)
		size = HTTPD_MAX_REQUEST;
	r = parse(data, size, method, path, sizeof path);
	if (r == HTTPD_NEED_MORE && size >= HTTPD_MAX_REQUEST)
		abort();
	if (r == HTTPD_TOO_LARGE && size < HTTPD_MAX_REQUEST)
		abort();
	if (r == HTTPD_REQUEST) {
		size_t ml = strlen(method), pl = strlen(path);
		if (ml == 0 || ml > 15 || pl == 0 || pl >= sizeof path || path[0] != '/')
			abort();
		for (size_t i = 0; i < ml; i++)
			if (method[i] < 'A' || method[i] > 'Z')
				abort();
		for (size_t i = 0; i < pl; i++)
			if (path[i] == '?' || (unsigned char)path[i] <= ' ' ||
			    (unsigned char)path[i] >= 0x7f)
				abort();
	}
	/* a prefix that already holds the whole request answers the same */
	if (size > 0) {
		r2 = parse(data, size - 1, m2, p2, sizeof p2);
		if (r2 != HTTPD_NEED_MORE && (r2 != r || (r == HTTPD_REQUEST &&
		    (strcmp(m2, method) != 0 || strcmp(p2, path) != 0))))
			abort();
	}
	return 0;
}
