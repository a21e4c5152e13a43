/* anchor: the keys of the calls a scan read last, to prove the next page joins them. */
#ifndef VOZAGENT_ANCHOR_H
#define VOZAGENT_ANCHOR_H

#include <stddef.h>

#include "parse.h"

/* Pages of keys remembered: a forward shift of up to this many pages still joins. */
#define ANCHOR_PAGES 8
/* A key is the call's id, or "#" and a hash (no string id, or a very long one). */
#define ANCHOR_KEY_MAX 200

struct anchor;

struct anchor *anchor_new(size_t max_page_bytes);
void anchor_free(struct anchor *a);
/* A new scan: nothing to join yet. */
void anchor_reset(struct anchor *a);
/* Keys remembered from joined pages; 0 means any page joins. */
size_t anchor_count(const struct anchor *a);

/* The record's key, NUL-terminated, into key[ANCHOR_KEY_MAX + 1]. */
void anchor_key(const struct record *rec, char *key);
int anchor_has(const struct anchor *a, const char *key);

/* Collect the keys of the page being read; commit once it joined and is written. */
void anchor_page_begin(struct anchor *a);
void anchor_page_add(struct anchor *a, const char *key);
void anchor_page_commit(struct anchor *a);
/* Keys of the page being read (for a backfill to persist), in list order. */
size_t anchor_page_count(const struct anchor *a);
const char *anchor_page_key(const struct anchor *a, size_t i);
/*
 * dst becomes what src remembers (both made with the same max_page_bytes),
 * so a scan can go back to where its last commit left it. 0, or -1 out of
 * memory (dst is then empty).
 */
int anchor_copy(struct anchor *dst, const struct anchor *src);
/* Remember keys read before (a backfill keeps the calls of its first page this way). */
void anchor_load(struct anchor *a, const char *const *keys, size_t n);

#endif
