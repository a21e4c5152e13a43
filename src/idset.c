/* idset: a hash index over strings kept in the caller's buffer, for duplicate and membership checks. */
#include "idset.h"

#include <stdlib.h>
#include <string.h>

/*
 * Open addressing with linear probing. A page holds at most `limit` calls
 * (parse caps it), so even ids crafted to collide cost limit^2 compares at
 * worst; the hash makes the usual case one compare per call.
 */
struct idset_slot {
	uint64_t hash;
	size_t off1;              /* offset + 1 into the caller's buffer; 0 = empty */
	size_t len;
};

uint64_t
idset_hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

void
idset_init(struct idset *s)
{
	memset(s, 0, sizeof *s);
	s->hash = idset_hash;
}

void
idset_clear(struct idset *s)
{
	if (s->slots != NULL && s->n > 0)
		memset(s->slots, 0, s->cap * sizeof *s->slots);
	s->n = 0;
}

void
idset_free(struct idset *s)
{
	free(s->slots);
	s->slots = NULL;
	s->cap = s->n = 0;
}

size_t
idset_count(const struct idset *set)
{
	return set->n;
}

/* cap is a power of two */
static size_t
idset_home(const struct idset *set, uint64_t h)
{
	/* fold the high bits in: FNV's low bits alone spread short ids poorly */
	return (size_t)(h ^ (h >> 32)) & (set->cap - 1);
}

bool
idset_has(const struct idset *set, const char *base, const char *s, size_t len)
{
	uint64_t h;
	size_t i;

	if (set->n == 0)
		return false;
	h = set->hash(s, len);
	for (i = idset_home(set, h); set->slots[i].off1 != 0; i = (i + 1) & (set->cap - 1)) {
		const struct idset_slot *sl = &set->slots[i];
		if (sl->hash == h && sl->len == len && memcmp(base + sl->off1 - 1, s, len) == 0)
			return true;
	}
	return false;
}

static void
idset_put(struct idset *set, const struct idset_slot *in)
{
	size_t i = idset_home(set, in->hash);

	while (set->slots[i].off1 != 0)
		i = (i + 1) & (set->cap - 1);
	set->slots[i] = *in;
	set->n++;
}

/* Keep the table at most half full, so probe runs stay short. */
static int
idset_grow(struct idset *set)
{
	struct idset_slot *old = set->slots;
	size_t oldcap = set->cap, cap = oldcap ? oldcap * 2 : 64;

	if (cap > SIZE_MAX / sizeof *old)
		return -1;
	set->slots = calloc(cap, sizeof *old);
	if (set->slots == NULL) {
		set->slots = old;
		return -1;
	}
	set->cap = cap;
	set->n = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].off1 != 0)
			idset_put(set, &old[i]);
	free(old);
	return 0;
}

int
idset_add(struct idset *set, const char *base, size_t off, size_t len)
{
	struct idset_slot sl;

	if ((set->n + 1) * 2 > set->cap && idset_grow(set) < 0)
		return -1;
	sl.hash = set->hash(base + off, len);
	sl.off1 = off + 1;
	sl.len = len;
	idset_put(set, &sl);
	return 0;
}
