/* The user's strings (task and queue names) in places that need whole
 * characters or JSON, which must be UTF-8: cutting a name to a length
 * without splitting a character, and escaping it into a JSON string; and
 * keeping one on one line of text. */
#ifndef WEFT_COMMON_UTF8_H
#define WEFT_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The length (1-4) of the well-formed UTF-8 sequence at s, or 0 when the
 * bytes there are not one (a stray continuation byte, a sequence cut short,
 * an overlong form, a surrogate, or past U+10FFFF). */
size_t weft__utf8_len(const unsigned char *s);

/* How many bytes of s to keep so that at most max are kept and the last
 * character is whole. Reads at most max bytes: s need not be terminated
 * within them. */
size_t weft__utf8_cut(const char *s, size_t max);

/* One step of escaping s for the inside of a JSON string: writes the next
 * character's JSON form into out (at most 6 bytes, no NUL) and returns its
 * length; *used gets the bytes of s it stood for. Well-formed UTF-8 is
 * kept, a byte that is not part of it becomes \ufffd, quotes, backslashes
 * and control characters are escaped. s must not be at its NUL. */
size_t weft__json_escape_step(const char *s, char out[6], size_t *used);

/* Writes s to f as a JSON string, quotes included. */
void weft__json_write_string(FILE *f, const char *s);

/* Writes s to f on one line whatever it holds, for text meant to be read
 * line by line (the task dump, the queue table): a control character
 * (ASCII or C1) or a Unicode line or paragraph separator shows as '?', and
 * so does a single quote when quoted is set (the caller puts s between
 * single quotes). Returns the characters written, as columns for padding
 * (a stray byte counts as one; wide characters as one too). */
size_t weft__write_one_line(FILE *f, const char *s, bool quoted);

#endif
