/* track: a pass's unfinished calls: those listed in progress, and those that no longer are. */
#include "track.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct stale_call {
	char *id;
	char *contact_id;
};

struct track {
	size_t max_tracked;
	char **tracked;                /* ids listed as in-progress this pass */
	size_t ntracked, tracked_cap;
	bool overflow;                 /* too many to track: skip the refresh this pass */
	struct stale_call *stale;      /* mirrored as in-progress but no longer listed */
	size_t nstale, stale_cap, stale_pos;
};

struct track *
track_new(size_t max_tracked)
{
	struct track *t = calloc(1, sizeof *t);

	if (t != NULL)
		t->max_tracked = max_tracked;
	return t;
}

void
track_clear_stale(struct track *t)
{
	for (size_t i = 0; i < t->nstale; i++) {
		free(t->stale[i].id);
		free(t->stale[i].contact_id);
	}
	t->nstale = t->stale_pos = 0;
}

void
track_clear(struct track *t)
{
	for (size_t i = 0; i < t->ntracked; i++)
		free(t->tracked[i]);
	t->ntracked = 0;
	t->overflow = false;
	track_clear_stale(t);
}

void
track_truncate(struct track *t, size_t n)
{
	while (t->ntracked > n)
		free(t->tracked[--t->ntracked]);
	/* the calls past the cap came from the pages forgotten too */
	if (t->ntracked < t->max_tracked)
		t->overflow = false;
}

void
track_free(struct track *t)
{
	if (t == NULL)
		return;
	track_clear(t);
	free(t->tracked);
	free(t->stale);
	free(t);
}

int
track_add(struct track *t, const char *id)
{
	if (t->overflow)
		return 0;
	if (t->ntracked >= t->max_tracked) {
		log_warnx("more than %zu calls in progress: not refreshing finished ones this pass",
		    t->max_tracked);
		t->overflow = true;
		return 0;
	}
	if (t->ntracked == t->tracked_cap) {
		size_t cap = t->tracked_cap ? t->tracked_cap * 2 : 256;
		char **nt = realloc(t->tracked, cap * sizeof *nt);
		if (nt == NULL)
			return -1;
		t->tracked = nt;
		t->tracked_cap = cap;
	}
	t->tracked[t->ntracked] = strdup(id);
	if (t->tracked[t->ntracked] == NULL)
		return -1;
	t->ntracked++;
	return 0;
}

bool
track_is_overflowing(const struct track *t)
{
	return t->overflow;
}

size_t
track_count(const struct track *t)
{
	return t->ntracked;
}

const char *const *
track_ids(const struct track *t)
{
	return (const char *const *)t->tracked;
}

int
track_add_stale(void *arg, const char *id, const char *contact_id)
{
	struct track *t = arg;
	struct stale_call *c;

	if (t->nstale == t->stale_cap) {
		size_t cap = t->stale_cap ? t->stale_cap * 2 : 64;
		struct stale_call *ns = realloc(t->stale, cap * sizeof *ns);
		if (ns == NULL)
			return -1;
		t->stale = ns;
		t->stale_cap = cap;
	}
	c = &t->stale[t->nstale];
	c->id = strdup(id);
	c->contact_id = contact_id != NULL ? strdup(contact_id) : NULL;
	if (c->id == NULL || (contact_id != NULL && c->contact_id == NULL)) {
		free(c->id);
		free(c->contact_id);
		return -1;
	}
	t->nstale++;
	return 0;
}

size_t
track_stale_count(const struct track *t)
{
	return t->nstale;
}

const char *
track_next_contact(struct track *t)
{
	while (t->stale_pos < t->nstale) {
		struct stale_call *c = &t->stale[t->stale_pos++];
		if (c->contact_id == NULL) {
			log_warnx("call %s was in progress and is no longer listed as such, but has no "
			    "contact_id to look it up by: the next backfill refreshes it", c->id);
			continue;
		}
		/* stale calls come sorted by contact: one scan per contact */
		if (t->stale_pos >= 2 && t->stale[t->stale_pos - 2].contact_id != NULL &&
		    strcmp(t->stale[t->stale_pos - 2].contact_id, c->contact_id) == 0)
			continue;
		return c->contact_id;
	}
	return NULL;
}
