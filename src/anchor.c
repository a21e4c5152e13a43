/* anchor: the keys of the calls a scan read last, to prove the next page joins them. */
#include "anchor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

struct anchor_page {
	struct buf keys;          /* NUL-terminated keys, back to back */
	size_t n;
};

struct anchor {
	struct anchor_page pages[ANCHOR_PAGES];   /* joined pages, a ring */
	unsigned head, used;
	struct anchor_page reading;               /* the page being read */
};

struct anchor *
anchor_new(size_t max_page_bytes)
{
	struct anchor *a = calloc(1, sizeof *a);

	if (a == NULL)
		return NULL;
	for (int i = 0; i < ANCHOR_PAGES; i++)
		buf_init(&a->pages[i].keys, max_page_bytes);
	buf_init(&a->reading.keys, max_page_bytes);
	return a;
}

void
anchor_free(struct anchor *a)
{
	if (a == NULL)
		return;
	for (int i = 0; i < ANCHOR_PAGES; i++)
		buf_free(&a->pages[i].keys);
	buf_free(&a->reading.keys);
	free(a);
}

void
anchor_reset(struct anchor *a)
{
	for (int i = 0; i < ANCHOR_PAGES; i++) {
		a->pages[i].keys.len = 0;
		a->pages[i].n = 0;
	}
	a->head = a->used = 0;
	a->reading.keys.len = 0;
	a->reading.n = 0;
}

size_t
anchor_count(const struct anchor *a)
{
	size_t n = 0;

	for (unsigned i = 0; i < a->used; i++)
		n += a->pages[i].n;
	return n;
}

/* FNV-1a, 64 bits: a stable stand-in for records without a usable id. */
static uint64_t
fnv1a(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

void
anchor_key(const struct record *rec, char *key)
{
	const struct field_value *id = &rec->f[FIELD_ID];

	if (id->type == JSON_STRING && id->len > 0 && id->len <= ANCHOR_KEY_MAX - 1 &&
	    id->text[0] != '#' && memchr(id->text, '\0', id->len) == NULL) {
		memcpy(key, id->text, id->len);
		key[id->len] = '\0';
	} else if (id->type == JSON_STRING) {
		snprintf(key, ANCHOR_KEY_MAX + 1, "#id:%016llx",
		    (unsigned long long)fnv1a(id->text, id->len));
	} else {
		snprintf(key, ANCHOR_KEY_MAX + 1, "#raw:%016llx",
		    (unsigned long long)fnv1a(rec->raw, rec->raw_len));
	}
}

static int
page_has(const struct anchor_page *p, const char *key)
{
	const char *k = p->keys.data;

	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(k, key) == 0)
			return 1;
		k += strlen(k) + 1;
	}
	return 0;
}

int
anchor_has(const struct anchor *a, const char *key)
{
	for (unsigned i = 0; i < a->used; i++)
		if (page_has(&a->pages[i], key))
			return 1;
	return 0;
}

void
anchor_page_begin(struct anchor *a)
{
	a->reading.keys.len = 0;
	a->reading.n = 0;
}

void
anchor_page_add(struct anchor *a, const char *key)
{
	/* cannot fail within the cap (a page's keys are shorter than its body) */
	if (buf_append(&a->reading.keys, key, strlen(key) + 1) == 0)
		a->reading.n++;
}

void
anchor_page_commit(struct anchor *a)
{
	struct anchor_page tmp;

	if (a->reading.n == 0)
		return;
	/* swap the page read into the ring, in place of the oldest page */
	tmp = a->pages[a->head];
	a->pages[a->head] = a->reading;
	a->reading = tmp;
	a->reading.keys.len = 0;
	a->reading.n = 0;
	a->head = (a->head + 1) % ANCHOR_PAGES;
	if (a->used < ANCHOR_PAGES)
		a->used++;
}

size_t
anchor_page_count(const struct anchor *a)
{
	return a->reading.n;
}

const char *
anchor_page_key(const struct anchor *a, size_t i)
{
	const char *k = a->reading.keys.data;

	while (i-- > 0)
		k += strlen(k) + 1;
	return k;
}

void
anchor_load(struct anchor *a, const char *const *keys, size_t n)
{
	anchor_reset(a);
	for (size_t i = 0; i < n; i++)
		anchor_page_add(a, keys[i]);
	anchor_page_commit(a);
}
