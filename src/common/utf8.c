/* UTF-8 cutting and JSON escaping; see utf8.h. */
#include "common/utf8.h"

#include <string.h>

size_t weft__utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        if (s[0] == 0xe0)
            lo = 0xa0; /* overlong */
        if (s[0] == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        if (s[0] == 0xf0)
            lo = 0x90; /* overlong */
        if (s[0] == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

size_t weft__utf8_cut(const char *s, size_t max)
{
    /* Only the bytes before the cut are read: s need not end within max. */
    size_t len = strnlen(s, max);
    const unsigned char *u = (const unsigned char *)s;
    size_t lead = len;
    while (lead > 0 && len - lead < 3 && (u[lead - 1] & 0xc0) == 0x80)
        lead--;
    if (lead == 0)
        return len;
    lead--; /* the last character's first byte */
    /* A lead byte's length; a byte that leads nothing (kept, and escaped
     * where the name must be UTF-8) counts as whole. */
    unsigned char b = u[lead];
    size_t need = b >= 0xc2 && b <= 0xdf   ? 2
                  : b >= 0xe0 && b <= 0xef ? 3
                  : b >= 0xf0 && b <= 0xf4 ? 4
                                           : 1;
    return lead + need > len ? lead : len; /* a character cut short is dropped */
}

size_t weft__json_escape_step(const char *s, char out[6], size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    if (*p == '"' || *p == '\\') {
        out[0] = '\\';
        out[1] = (char)*p;
        *used = 1;
        return 2;
    }
    if (*p < 0x20) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[*p >> 4];
        out[5] = hex[*p & 15];
        *used = 1;
        return 6;
    }
    size_t n = weft__utf8_len(p);
    if (n) {
        memcpy(out, p, n);
        *used = n;
        return n;
    }
    memcpy(out, "\\ufffd", 6);
    *used = 1;
    return 6;
}

void weft__json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    while (*s) {
        char out[6];
        size_t used, k = weft__json_escape_step(s, out, &used);
        fwrite(out, 1, k, f);
        s += used;
    }
    fputc('"', f);
}

/* The length of a line-breaking or terminal-controlling character that is
 * no ASCII control at s, or 0: a C1 control (U+0080..U+009F, among them
 * NEL, which some readers take as a line end, and CSI, which terminals
 * act on) or the line and paragraph separators U+2028 and U+2029. */
static size_t unicode_control_len(const unsigned char *s)
{
    if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)
        return 2;
    if (s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9))
        return 3;
    return 0;
}

size_t weft__write_one_line(FILE *f, const char *s, bool quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t columns = 0;
    while (*p) {
        size_t n = unicode_control_len(p);
        if (n || *p < 0x20 || *p == 0x7f || (quoted && *p == '\'')) {
            fputc('?', f);
            p += n ? n : 1;
        } else {
            /* A whole character, or one stray byte (shown as one
             * replacement character). */
            n = weft__utf8_len(p);
            if (!n)
                n = 1;
            fwrite(p, 1, n, f);
            p += n;
        }
        columns++;
    }
    return columns;
}
