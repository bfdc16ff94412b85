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
    size_t len = strnlen(s, max);
    /* A continuation byte just past the cut: the character it belongs to
     * does not fit whole, so cut before that character's lead byte. */
    if (s[len] && ((unsigned char)s[len] & 0xc0) == 0x80)
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    return len;
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

size_t weft__write_one_line(FILE *f, const char *s, bool quoted)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        fputc(c < 0x20 || c == 0x7f || (quoted && c == '\'') ? '?' : c, f);
    }
    return n;
}
