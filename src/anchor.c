/* anchor: the keys of the calls a scan read last, to prove the next page joins them. */
#include "anchor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "idset.h"

struct anchor_page {
	struct buf keys;          /* NUL-terminated keys, back to back */
	size_t n;
	size_t *off;              /* where key i starts in keys */
	size_t off_cap;
	struct idset index;       /* the keys, so a lookup is not a walk over the page */
};

struct anchor {
	struct anchor_page pages[ANCHOR_PAGES];   /* joined pages, a ring */
	unsigned head, used;
	struct anchor_page reading;               /* the page being read */
};

static void
page_init(struct anchor_page *p, size_t max_bytes)
{
	buf_init(&p->keys, max_bytes);
	idset_init(&p->index);
}

static void
page_free(struct anchor_page *p)
{
	buf_free(&p->keys);
	idset_free(&p->index);
	free(p->off);
}

static void
page_clear(struct anchor_page *p)
{
	p->keys.len = 0;
	p->n = 0;
	idset_clear(&p->index);
}

struct anchor *
anchor_new(size_t max_page_bytes)
{
	struct anchor *a = calloc(1, sizeof *a);

	if (a == NULL)
		return NULL;
	for (int i = 0; i < ANCHOR_PAGES; i++)
		page_init(&a->pages[i], max_page_bytes);
	page_init(&a->reading, max_page_bytes);
	return a;
}

void
anchor_free(struct anchor *a)
{
	if (a == NULL)
		return;
	for (int i = 0; i < ANCHOR_PAGES; i++)
		page_free(&a->pages[i]);
	page_free(&a->reading);
	free(a);
}

void
anchor_reset(struct anchor *a)
{
	for (int i = 0; i < ANCHOR_PAGES; i++)
		page_clear(&a->pages[i]);
	a->head = a->used = 0;
	page_clear(&a->reading);
}

size_t
anchor_count(const struct anchor *a)
{
	size_t n = 0;

	for (unsigned i = 0; i < a->used; i++)
		n += a->pages[i].n;
	return n;
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
		    (unsigned long long)idset_hash(id->text, id->len));
	} else {
		snprintf(key, ANCHOR_KEY_MAX + 1, "#raw:%016llx",
		    (unsigned long long)idset_hash(rec->raw, rec->raw_len));
	}
}

int
anchor_has(const struct anchor *a, const char *key)
{
	size_t len = strlen(key);

	for (unsigned i = 0; i < a->used; i++)
		if (idset_has(&a->pages[i].index, a->pages[i].keys.data, key, len))
			return 1;
	return 0;
}

void
anchor_page_begin(struct anchor *a)
{
	page_clear(&a->reading);
}

void
anchor_page_add(struct anchor *a, const char *key)
{
	struct anchor_page *p = &a->reading;
	size_t len = strlen(key), mark = p->keys.len;

	if (p->n == p->off_cap) {
		size_t cap = p->off_cap ? p->off_cap * 2 : 128;
		size_t *no = realloc(p->off, cap * sizeof *no);
		if (no == NULL)
			return;
		p->off = no;
		p->off_cap = cap;
	}
	/* cannot fail within the cap (a page's keys are shorter than its body) */
	if (buf_append(&p->keys, key, len + 1) < 0)
		return;
	if (idset_add(&p->index, p->keys.data, mark, len) < 0) {
		p->keys.len = mark;
		return;
	}
	p->off[p->n++] = mark;
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
	page_clear(&a->reading);
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
	return a->reading.keys.data + a->reading.off[i];
}

void
anchor_load(struct anchor *a, const char *const *keys, size_t n)
{
	anchor_reset(a);
	for (size_t i = 0; i < n; i++)
		anchor_page_add(a, keys[i]);
	anchor_page_commit(a);
}

/* dst's page becomes a copy of src's: 0, or -1 out of memory. */
static int
page_copy(struct anchor_page *dst, const struct anchor_page *src)
{
	page_clear(dst);
	if (src->n > dst->off_cap) {
		size_t *no = realloc(dst->off, src->n * sizeof *no);
		if (no == NULL)
			return -1;
		dst->off = no;
		dst->off_cap = src->n;
	}
	if (buf_append(&dst->keys, src->keys.data, src->keys.len) < 0)
		return -1;
	for (size_t i = 0; i < src->n; i++) {
		size_t len = strlen(src->keys.data + src->off[i]);
		if (idset_add(&dst->index, dst->keys.data, src->off[i], len) < 0) {
			page_clear(dst);
			return -1;
		}
		dst->off[i] = src->off[i];
	}
	dst->n = src->n;
	return 0;
}

int
anchor_copy(struct anchor *dst, const struct anchor *src)
{
	anchor_reset(dst);
	for (int i = 0; i < ANCHOR_PAGES; i++)
		if (page_copy(&dst->pages[i], &src->pages[i]) < 0) {
			anchor_reset(dst);
			return -1;
		}
	if (page_copy(&dst->reading, &src->reading) < 0) {
		anchor_reset(dst);
		return -1;
	}
	dst->head = src->head;
	dst->used = src->used;
	return 0;
}
