/*
 * fastget: how fast an API server serves pages, measured by a client that
 * does nothing else: every page of the call list (limit 100), C keep-alive
 * connections through one curl multi handle, bodies counted and dropped.
 *
 *   fastget --url BASE --calls N [--key K] [--concurrency C] [--limit L]
 *
 * BASE is the API root (the client requests BASE/calls?limit=L&offset=O).
 * Prints one line: pages, bytes, seconds, pages/s, MB/s. Exits 1 when a
 * request fails or answers other than 200.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_CONC 64

struct slot {
	CURL *easy;
	char url[1024];
};

static uint64_t total_bytes;

static size_t
cb_discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	total_bytes += size * n;
	return size * n;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
usage(void)
{
	fprintf(stderr, "usage: fastget --url BASE --calls N [--key K] [--concurrency C]"
	    " [--limit L]\n");
	exit(64);
}

/* Points the slot's handle at page `offset` and hands it to the multi handle. */
static void
slot_start(CURLM *multi, struct slot *s, const char *base, unsigned limit, uint64_t offset)
{
	snprintf(s->url, sizeof s->url, "%s/calls?limit=%u&offset=%" PRIu64, base, limit, offset);
	curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
	curl_multi_add_handle(multi, s->easy);
}

int
main(int argc, char **argv)
{
	const char *base = NULL, *key = "bench-token";
	unsigned conc = 8, limit = 100;
	uint64_t calls = 0, next = 0, pages = 0, npages;
	struct slot slots[MAX_CONC];
	struct curl_slist *hdrs = NULL;
	char auth[512];
	CURLM *multi;
	int running = 1, failed = 0;
	double t0, dt;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0)
			base = argv[i + 1];
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[i + 1];
		else if (strcmp(argv[i], "--calls") == 0)
			calls = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--concurrency") == 0)
			conc = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--limit") == 0)
			limit = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else
			usage();
	}
	if (argc % 2 == 0 || base == NULL || calls == 0 || conc < 1 || conc > MAX_CONC ||
	    limit < 1 || limit > 100)
		usage();
	npages = (calls + limit - 1) / limit;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
	hdrs = curl_slist_append(hdrs, auth);
	t0 = now_s();
	for (unsigned i = 0; i < conc; i++) {
		slots[i].easy = curl_easy_init();
		curl_easy_setopt(slots[i].easy, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(slots[i].easy, CURLOPT_WRITEFUNCTION, cb_discard);
		curl_easy_setopt(slots[i].easy, CURLOPT_PRIVATE, &slots[i]);
		if (next < npages)
			slot_start(multi, &slots[i], base, limit, limit * next++);
	}
	while (running > 0 && !failed) {
		CURLMsg *m;
		int left;

		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			struct slot *s;
			long code = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (m->data.result != CURLE_OK || code != 200) {
				fprintf(stderr, "fastget: %s: %s (HTTP %ld)\n", s->url,
				    curl_easy_strerror(m->data.result), code);
				failed = 1;
			}
			curl_multi_remove_handle(multi, m->easy_handle);
			pages++;
			if (next < npages) {
				slot_start(multi, s, base, limit, limit * next++);
				running++;
			}
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	dt = now_s() - t0;
	printf("pages=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f pages_per_s=%.0f MB_per_s=%.1f\n",
	    pages, total_bytes, dt, (double)pages / dt, (double)total_bytes / dt / 1e6);
	for (unsigned i = 0; i < conc; i++)
		curl_easy_cleanup(slots[i].easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	return failed;
}
