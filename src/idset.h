/* idset: a hash index over strings kept in the caller's buffer, for duplicate and membership checks. */
#ifndef VOZAGENT_IDSET_H
#define VOZAGENT_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idset_slot;

/*
 * The strings live in the caller's buffer, which may move when it grows:
 * the set keeps their offsets, and every call takes the buffer's current
 * base. The caller owns the struct; idset_free releases what the set holds.
 */
struct idset {
	struct idset_slot *slots;
	size_t cap, n;
	/* FNV-1a unless replaced before the first add (tests force collisions) */
	uint64_t (*hash)(const char *s, size_t len);
};

void idset_init(struct idset *s);
/* Forget every string; keeps the memory for the next page. */
void idset_clear(struct idset *s);
void idset_free(struct idset *s);
/* Is s[0..len) one of the indexed strings (each at base + its offset)? */
bool idset_has(const struct idset *set, const char *base, const char *s, size_t len);
/* Index the len bytes at base + off. 0, or -1 out of memory. */
int idset_add(struct idset *set, const char *base, size_t off, size_t len);
size_t idset_count(const struct idset *set);

uint64_t idset_hash(const char *s, size_t len);

#endif
