/* revisit: where one scan last read a sample of its keys, to catch a list that starts over. */
#include <stdlib.h>
#include <string.h>

#include "idset.h"
#include "revisit.h"

struct revisit_slot {
	uint64_t hash;            /* 0: empty */
	int64_t offset;
};

struct revisit {
	struct revisit_slot *slots;
	size_t n;
};

struct revisit *
revisit_new(void)
{
	struct revisit *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	r->slots = calloc(REVISIT_SLOTS, sizeof *r->slots);
	if (r->slots == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void
revisit_free(struct revisit *r)
{
	if (r == NULL)
		return;
	free(r->slots);
	free(r);
}

void
revisit_reset(struct revisit *r)
{
	if (r->n == 0)
		return;
	memset(r->slots, 0, REVISIT_SLOTS * sizeof *r->slots);
	r->n = 0;
}

int64_t
revisit_note(struct revisit *r, const char *key, int64_t offset)
{
	uint64_t h = idset_hash(key, strlen(key));
	size_t i;

	if (h % REVISIT_SAMPLE != 0)
		return -1;
	/* 0 marks an empty slot; the one key hashing to it shares 16's slot chain */
	if (h == 0)
		h = REVISIT_SAMPLE;
	for (i = (size_t)(h >> 4) & (REVISIT_SLOTS - 1); r->slots[i].hash != 0;
	    i = (i + 1) & (REVISIT_SLOTS - 1)) {
		if (r->slots[i].hash == h) {
			int64_t last = r->slots[i].offset;

			r->slots[i].offset = offset;
			return last;
		}
	}
	/* full enough: the keys kept first are the ones a list that starts over repeats */
	if (r->n >= REVISIT_SLOTS / 4 * 3)
		return -1;
	r->slots[i].hash = h;
	r->slots[i].offset = offset;
	r->n++;
	return -1;
}
