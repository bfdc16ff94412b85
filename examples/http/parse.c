/* parse.c - the incremental HTTP/1.x request parser; see parse.h.
 *
 * Parsing is done in two stages so that a request arriving a byte at a time
 * costs linear time and the result never depends on how the bytes were
 * split:
 *
 *  1. Framing (resumable): find where the request line and the header
 *     section end, looking only at bytes not scanned before. Until the
 *     header section is complete the only errors are the two size limits,
 *     which a longer input can only confirm: a request line that is already
 *     too long (414) and a header section that is already too long (431).
 *  2. Validation (once the header section is complete): the request line,
 *     every header field, the framing headers (Content-Length,
 *     Transfer-Encoding), then the body length.
 *
 * Both the whole input and any prefix therefore take the same decisions in
 * the same order; the fuzz target (fuzz_parse.c) checks exactly that.
 */
#include "parse.h"

#include <string.h>

/* The request line ends (its '\n') at an index of at most this: the limit
 * plus one byte for a '\r'. Empty lines before it count towards it. */
#define LINE_END_MAX (HTTP_MAX_REQUEST_LINE + 1)

void http_parser_init(http_parser *p)
{
    memset(p, 0, sizeof *p);
}

/* ---- character classes (RFC 9110 §5.6.2) --------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Bytes allowed in a field value: HTAB, SP, VCHAR and obs-text. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= ' ' && c != 0x7f);
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool equal_nocase(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

bool http_slice_eq(http_slice s, const char *str)
{
    return s.len == strlen(str) && memcmp(s.ptr, str, s.len) == 0;
}

const http_slice *http_header_get(const http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (equal_nocase(req->headers[i].name.ptr, req->headers[i].name.len, name))
            return &req->headers[i].value;
    return NULL;
}

bool http_list_has(http_slice value, const char *token)
{
    const char *p = value.ptr, *end = value.ptr + value.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        while (p < item_end && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = item_end;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        if (equal_nocase(p, (size_t)(q - p), token))
            return true;
        p = comma ? comma + 1 : end;
    }
    return false;
}

/* ---- stage 1: framing ---------------------------------------------------- */

/* A line [from, nl) is empty when it holds nothing or a lone '\r'. */
static bool line_is_empty(const char *buf, size_t from, size_t nl)
{
    return nl == from || (nl == from + 1 && buf[from] == '\r');
}

/* Advances p over the complete lines in buf[p->scanned..len). Returns 1 when
 * the header section is complete (p->header_end set), 0 when more bytes are
 * needed, or -414 / -431 when a size limit is already exceeded. */
static int frame(http_parser *p, const char *buf, size_t len)
{
    while (!p->header_end) {
        size_t from = p->scanned;
        const char *nl = memchr(buf + from, '\n', len - from);
        if (!nl)
            break;
        size_t at = (size_t)(nl - buf);
        if (!p->line_end) {
            if (at > LINE_END_MAX)
                return -414;
            if (!line_is_empty(buf, from, at)) {
                p->line_start = from; /* the request line; empty ones before it are skipped */
                p->line_end = at + 1;
            }
        } else if (line_is_empty(buf, from, at)) {
            if (at + 1 > HTTP_MAX_HEADER_BYTES)
                return -431;
            p->header_end = at + 1;
        }
        p->scanned = at + 1;
    }
    if (p->header_end)
        return 1;
    /* No end yet: fail only when no continuation could bring it in limits. */
    if (!p->line_end)
        return len > LINE_END_MAX ? -414 : 0;
    return len > HTTP_MAX_HEADER_BYTES ? -431 : 0;
}

/* ---- stage 2: validation ------------------------------------------------- */

/* The line starting at from, which ends before limit: returns the end of
 * its content (without a final '\r') and stores the index of its '\n'. */
static size_t line_content_end(const char *buf, size_t from, size_t limit, size_t *nl)
{
    *nl = (size_t)((const char *)memchr(buf + from, '\n', limit - from) - buf);
    return *nl > from && buf[*nl - 1] == '\r' ? *nl - 1 : *nl;
}

/* method SP request-target SP HTTP-version, in buf[from, end). */
static int parse_request_line(const char *buf, size_t from, size_t end, http_request *req)
{
    size_t i = from;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == from || i == end || buf[i] != ' ')
        return -400;
    req->method = (http_slice){buf + from, i - from};
    size_t target = ++i;
    while (i < end && (unsigned char)buf[i] > ' ' && (unsigned char)buf[i] < 0x7f)
        i++;
    if (i == target || i == end || buf[i] != ' ')
        return -400;
    req->target = (http_slice){buf + target, i - target};
    const char *v = buf + i + 1;
    if (end - (i + 1) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return -400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -505;
    req->minor_version = v[7] - '0';
    return 0;
}

/* name ":" OWS value OWS, in buf[from, end). */
static int parse_field(const char *buf, size_t from, size_t end, http_request *req)
{
    size_t i = from;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == from || i == end || buf[i] != ':')
        return -400; /* also a line starting with a space: obs-fold */
    http_slice name = {buf + from, i - from};
    i++;
    for (size_t k = i; k < end; k++)
        if (!is_value_char((unsigned char)buf[k]))
            return -400; /* a CTL, such as a bare CR */
    while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    while (end > i && (buf[end - 1] == ' ' || buf[end - 1] == '\t'))
        end--;
    if (req->nheaders == HTTP_MAX_HEADERS)
        return -431;
    req->headers[req->nheaders++] = (http_header){name, {buf + i, end - i}};
    return 0;
}

/* Content-Length: 1*DIGIT; repeated fields must agree. */
static int parse_content_length(const http_request *req, uint64_t *out)
{
    bool seen = false;
    *out = 0;
    for (size_t h = 0; h < req->nheaders; h++) {
        const http_header *f = &req->headers[h];
        if (!equal_nocase(f->name.ptr, f->name.len, "content-length"))
            continue;
        if (f->value.len == 0)
            return -400;
        uint64_t n = 0;
        for (size_t i = 0; i < f->value.len; i++) {
            char c = f->value.ptr[i];
            if (c < '0' || c > '9')
                return -400;
            if (n <= HTTP_MAX_BODY) /* saturate: anything above is too large */
                n = n * 10 + (uint64_t)(c - '0');
        }
        if (seen && n != *out)
            return -400;
        seen = true;
        *out = n;
    }
    return *out > HTTP_MAX_BODY ? -413 : 0;
}

/* Validates the complete header section buf[0, p->header_end). */
static int validate(const http_parser *p, const char *buf, http_request *req)
{
    size_t nl;
    size_t end = line_content_end(buf, p->line_start, p->line_end, &nl);
    int r = parse_request_line(buf, p->line_start, end, req);
    if (r < 0)
        return r;
    /* Header fields up to the empty line that ends the section. */
    for (size_t from = p->line_end; from < p->header_end; from = nl + 1) {
        end = line_content_end(buf, from, p->header_end, &nl);
        if (nl + 1 == p->header_end)
            break;
        if ((r = parse_field(buf, from, end, req)) < 0)
            return r;
    }

    unsigned hosts = 0;
    bool close = false, keep_alive = false;
    for (size_t h = 0; h < req->nheaders; h++) {
        const http_header *f = &req->headers[h];
        if (equal_nocase(f->name.ptr, f->name.len, "transfer-encoding"))
            return -501;
        if (equal_nocase(f->name.ptr, f->name.len, "host"))
            hosts++;
        if (equal_nocase(f->name.ptr, f->name.len, "connection")) {
            close |= http_list_has(f->value, "close");
            keep_alive |= http_list_has(f->value, "keep-alive");
        }
    }
    /* RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0. */
    if (hosts > 1 || (hosts == 0 && req->minor_version == 1))
        return -400;
    req->keep_alive = !close && (req->minor_version == 1 || keep_alive);
    return parse_content_length(req, &req->content_length);
}

int http_parse(http_parser *p, const char *buf, size_t len, http_request *req)
{
    /* Waiting for the rest of a body: the header section was validated
     * when it came in (once; it fills req again once the body is here). */
    if (p->header_valid && len - p->header_end < p->body_length)
        return 0;
    int r = frame(p, buf, len);
    if (r == 0)
        return 0;
    if (r > 0) {
        req->nheaders = 0;
        req->content_length = 0;
        req->body = (http_slice){NULL, 0};
        r = validate(p, buf, req);
        if (r == 0) {
            if (len - p->header_end < req->content_length) {
                /* The body is not all here: keep the framing. */
                p->header_valid = true;
                p->body_length = req->content_length;
                return 0;
            }
            req->body = (http_slice){buf + p->header_end, (size_t)req->content_length};
            r = (int)(p->header_end + req->content_length);
        }
    }
    http_parser_init(p);
    return r;
}
