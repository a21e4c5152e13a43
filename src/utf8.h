/* utf8: the one strict UTF-8 check (RFC 3629) for every text that leaves the daemon. */
#ifndef VOZAGENT_UTF8_H
#define VOZAGENT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Length (1-4) of the character s starts with, among the n bytes there; 0
 * when those bytes are not one: a stray continuation byte, an overlong form,
 * a UTF-16 surrogate (U+D800-DFFF), a code point past U+10FFFF, or a
 * character cut short by n. U+0000 counts as a character (length 1).
 */
size_t utf8_char_len(const unsigned char *s, size_t n);

/* Are the n bytes at s (n >= 1) the valid start of a character that needs more? */
bool utf8_is_cut(const unsigned char *s, size_t n);

/* Is every byte of s[0..n) part of a valid character? */
bool utf8_is_valid(const unsigned char *s, size_t n);

/*
 * Makes the NUL-terminated s valid UTF-8 in place: every byte that does not
 * start a valid character becomes '?' (same length, so fixed buffers stay
 * as they are), and a character cut by the end (snprintf's %.Ns) is dropped.
 */
void utf8_repair(char *s);

#endif
