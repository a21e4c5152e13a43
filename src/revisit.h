/* revisit: where one scan last read a sample of its keys, to catch a list that starts over. */
#ifndef VOZAGENT_REVISIT_H
#define VOZAGENT_REVISIT_H

#include <stdint.h>

/* One key in this many is kept: memory stays flat whatever the length of the list. */
#define REVISIT_SAMPLE 16
/* Slots of the table (16 bytes each); past three quarters full, new keys are not kept. */
#define REVISIT_SLOTS (1u << 15)

struct revisit;

struct revisit *revisit_new(void);
void revisit_free(struct revisit *r);
/* A new scan (or a backfill's lap from offset 0): forget every key. */
void revisit_reset(struct revisit *r);
/*
 * The scan read key (NUL-terminated) at offset. Returns the offset this
 * scan last read it at when the key is sampled and was read before (and
 * remembers this one instead), else -1 (and a sampled key is kept with
 * this offset while there is room).
 */
int64_t revisit_note(struct revisit *r, const char *key, int64_t offset);

#endif
