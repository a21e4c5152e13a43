/* track: a pass's unfinished calls: those listed in progress, and those that no longer are. */
#ifndef VOZAGENT_TRACK_H
#define VOZAGENT_TRACK_H

#include <stdbool.h>
#include <stddef.h>

struct track;

/* Tracks at most max_tracked in-progress ids per pass; NULL when memory is out. */
struct track *track_new(size_t max_tracked);
void track_free(struct track *t);
/* Forgets everything: a new pass, or the end of one. */
void track_clear(struct track *t);

/*
 * Remembers an id listed as in progress: 0, or -1 when memory is out. Past
 * max_tracked it tracks no more (and says so once): the refresh is skipped.
 */
int track_add(struct track *t, const char *id);
/* More in progress than max_tracked: this pass cannot tell which calls finished. */
bool track_is_overflowing(const struct track *t);
size_t track_count(const struct track *t);
/* Forgets the ids tracked after the first n (their pages' commit was lost: they are read again). */
void track_truncate(struct track *t, size_t n);
/* The ids tracked, in the order they were added; valid until the next track_add/clear. */
const char *const *track_ids(const struct track *t);

/*
 * Adds a call mirrored as in progress but no longer listed as such
 * (contact_id may be NULL). Matches store_unfinished's callback: arg is the
 * track. 0, or -1 when memory is out.
 */
int track_add_stale(void *arg, const char *id, const char *contact_id);
size_t track_stale_count(const struct track *t);
/* Forgets the stale calls (and where track_next_contact was). */
void track_clear_stale(struct track *t);
/*
 * The next contact whose calls need a refresh, each once when the stale calls
 * came sorted by contact; NULL when none is left. A stale call without a
 * contact_id is skipped with a warning: nothing can look it up.
 */
const char *track_next_contact(struct track *t);

#endif
