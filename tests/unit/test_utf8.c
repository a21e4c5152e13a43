/*
 * test_utf8: the strict UTF-8 check (RFC 3629) against a table of sequences,
 * and the in-place repair that log lines, database text and STATUS go through.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "utf8.h"
#include "test.h"

struct seq {
	const char *what;
	const char *bytes;
	size_t len;
	size_t char_len;        /* utf8_char_len of the whole: 0 = invalid */
	int cut;                /* utf8_is_cut: a valid start that needs more bytes */
};

#define S(what, lit, clen, cut) { what, lit, sizeof lit - 1, clen, cut }

static const struct seq table[] = {
	S("ASCII", "A", 1, 0),
	S("U+0000", "\x00", 1, 0),
	S("U+007F", "\x7F", 1, 0),
	S("U+0080", "\xC2\x80", 2, 0),
	S("U+07FF", "\xDF\xBF", 2, 0),
	S("U+0800", "\xE0\xA0\x80", 3, 0),
	S("U+D7FF (last before the surrogates)", "\xED\x9F\xBF", 3, 0),
	S("U+E000 (first after the surrogates)", "\xEE\x80\x80", 3, 0),
	S("U+FFFD", "\xEF\xBF\xBD", 3, 0),
	S("U+FFFF", "\xEF\xBF\xBF", 3, 0),
	S("U+10000", "\xF0\x90\x80\x80", 4, 0),
	S("U+10FFFF", "\xF4\x8F\xBF\xBF", 4, 0),
	S("lone continuation byte", "\x80", 0, 0),
	S("continuation 0xBF", "\xBF", 0, 0),
	S("overlong NUL C0 80", "\xC0\x80", 0, 0),
	S("overlong C1 BF", "\xC1\xBF", 0, 0),
	S("overlong 3-byte E0 80 80", "\xE0\x80\x80", 0, 0),
	S("overlong 3-byte E0 9F BF", "\xE0\x9F\xBF", 0, 0),
	S("overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80", 0, 0),
	S("overlong 4-byte F0 8F BF BF", "\xF0\x8F\xBF\xBF", 0, 0),
	S("surrogate U+D800 ED A0 80", "\xED\xA0\x80", 0, 0),
	S("surrogate U+DBFF ED AF BF", "\xED\xAF\xBF", 0, 0),
	S("surrogate U+DC00 ED B0 80", "\xED\xB0\x80", 0, 0),
	S("surrogate U+DFFF ED BF BF", "\xED\xBF\xBF", 0, 0),
	S("U+110000 F4 90 80 80", "\xF4\x90\x80\x80", 0, 0),
	S("F5 lead byte", "\xF5\x80\x80\x80", 0, 0),
	S("F8 lead byte (5-byte form)", "\xF8\x88\x80\x80\x80", 0, 0),
	S("FE", "\xFE", 0, 0),
	S("FF", "\xFF", 0, 0),
	S("2-byte without its continuation", "\xC2\x41", 0, 0),
	S("3-byte with a bad third byte", "\xE2\x82\x41", 0, 0),
	S("4-byte with a bad fourth byte", "\xF0\x9F\x98\x41", 0, 0),
	S("cut 2-byte", "\xC3", 0, 1),
	S("cut 3-byte (1 of 3)", "\xE2", 0, 1),
	S("cut 3-byte (2 of 3)", "\xE2\x82", 0, 1),
	S("cut 4-byte (3 of 4)", "\xF0\x9F\x98", 0, 1),
	S("cut surrogate is no valid start", "\xED\xA0", 0, 0),
	S("cut overlong is no valid start", "\xE0\x80", 0, 0),
	S("cut past U+10FFFF is no valid start", "\xF4\x90", 0, 0),
};

static void
test_char_len_table(void)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		const struct seq *t = &table[i];
		const unsigned char *b = (const unsigned char *)t->bytes;
		size_t got = utf8_char_len(b, t->len);
		int cut = utf8_is_cut(b, t->len);

		if (got != t->char_len || cut != t->cut)
			TEST_FAIL_("%s: utf8_char_len %zu (expected %zu), utf8_is_cut %d (expected %d)",
			    t->what, got, t->char_len, cut, t->cut);
		ASSERT_EQ_INT(utf8_is_valid(b, t->len), t->char_len == t->len);
	}
}

/* What log_clean makes of a string (every byte that starts no character is one '?'). */
static void
clean_eq(const char *in, const char *want)
{
	char buf[64];

	snprintf(buf, sizeof buf, "%s", in);
	log_clean(buf);
	ASSERT_EQ_STR(buf, want);
	ASSERT_TRUE(utf8_is_valid((const unsigned char *)buf, strlen(buf)));
}

static void
test_log_clean(void)
{
	clean_eq("plain", "plain");
	clean_eq("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89",
	    "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89");
	clean_eq("a\tb\nc\rd\x7f" "e", "a b c d e");
	/* a 503 body holding a surrogate must not reach a text column */
	clean_eq("busy \xED\xA0\x80 now", "busy ??? now");
	clean_eq("\xC0\x80", "??");
	clean_eq("\xE0\x80\xAF", "???");
	clean_eq("\xF4\x90\x80\x80", "????");
	clean_eq("\xF8\x88\x80\x80\x80", "?????");
	clean_eq("x\xFFy", "x?y");
	clean_eq("x\x80y", "x?y");
	/* a character cut by the end (snprintf's %.Ns) is dropped, not turned into '?' */
	clean_eq("end \xE2\x82", "end ");
	clean_eq("end \xF0\x9F\x98", "end ");
	/* ... unless it could never have been one */
	clean_eq("end \xED\xA0", "end ??");
}

static void
test_repair_keeps_newlines(void)
{
	char buf[] = "READY=1\nSTATUS=bad \xED\xBF\xBF end \xC3";

	utf8_repair(buf);
	ASSERT_EQ_STR(buf, "READY=1\nSTATUS=bad ??? end ");
}

static const struct test_case tests[] = {
	TEST(test_char_len_table),
	TEST(test_log_clean),
	TEST(test_repair_keeps_newlines),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
