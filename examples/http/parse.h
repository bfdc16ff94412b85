/* parse.h - an incremental HTTP/1.x request parser (no weft dependency).
 *
 * The parser reads a request line, the header fields and, when there is a
 * Content-Length, the body, out of a buffer the caller keeps filling. It
 * copies nothing: the request's method, target, header names and values
 * and body are slices of the caller's buffer.
 *
 *     http_parser p;
 *     http_request req;
 *     http_parser_init(&p);
 *     for (;;) {
 *         len += read more into buf + len;
 *         int r = http_parse(&p, buf, len, &req);
 *         if (r > 0)  -> a complete request of r bytes (more may follow:
 *                        pipelining); answer it, drop r bytes, parse again
 *         if (r == 0) -> needs more bytes (buf[0..len) must stay as it is,
 *                        but buf may move, e.g. with realloc)
 *         if (r < 0)  -> a bad request: answer with status -r, close
 *     }
 *
 * The result for a complete input never depends on how it was split: every
 * call on a prefix returns 0 or the final answer. Errors (the status to
 * answer with):
 *   400  malformed request line or header field, bare CR, obs-fold, bad or
 *        conflicting Content-Length, no Host (HTTP/1.1) or more than one
 *   413  Content-Length above HTTP_MAX_BODY
 *   414  request line longer than HTTP_MAX_REQUEST_LINE (empty lines sent
 *        before it, which are skipped, count towards it)
 *   431  header section longer than HTTP_MAX_HEADER_BYTES, or more than
 *        HTTP_MAX_HEADERS fields
 *   501  any Transfer-Encoding (chunked bodies are not supported: a
 *        deliberate choice to keep the example small; clients that need
 *        them get a clear refusal instead of a misread body)
 *   505  an HTTP version other than 1.0 and 1.1
 */
#ifndef WEFT_EXAMPLE_HTTP_PARSE_H
#define WEFT_EXAMPLE_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_REQUEST_LINE 8192    /* bytes, without the line end */
#define HTTP_MAX_HEADER_BYTES 16384   /* request line + fields + the empty line */
#define HTTP_MAX_HEADERS      100     /* header fields */
#define HTTP_MAX_BODY         1048576 /* Content-Length */

/* A piece of the caller's buffer (not NUL-terminated). */
typedef struct http_slice {
    const char *ptr;
    size_t len;
} http_slice;

typedef struct http_header {
    http_slice name;  /* as sent; compare case-insensitively */
    http_slice value; /* without leading and trailing spaces and tabs */
} http_header;

typedef struct http_request {
    http_slice method; /* "GET", ... (case-sensitive, as HTTP says) */
    http_slice target; /* "/index.html?q=1" */
    int minor_version; /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    uint64_t content_length; /* 0 without a Content-Length */
    http_slice body;         /* content_length bytes */
    bool keep_alive;         /* HTTP/1.1 unless "Connection: close"; HTTP/1.0
                                only with "Connection: keep-alive" */
} http_request;

/* Parser state between calls that return 0: how far the framing got, so
 * that no byte is scanned twice. Offsets, not pointers: buf may move. */
typedef struct http_parser {
    size_t scanned;    /* complete lines end here; the next starts here */
    size_t line_start; /* the request line (after any empty lines)... */
    size_t line_end;   /* ...and the index past its '\n' (0: not seen yet) */
    size_t header_end; /* past the empty line ending the header section (0: not yet) */
    /* Once the header section is complete and valid: its Content-Length,
     * so that calls while the body comes in do not validate it again. */
    bool header_valid;
    uint64_t body_length;
} http_parser;

void http_parser_init(http_parser *p);

/* Parses the request at the start of buf[0..len). Returns the number of
 * bytes it takes (request line, header section and body: > 0, req filled
 * in), 0 when more bytes are needed, or -status for a bad request. The
 * parser is ready for the next request after any non-zero return. */
int http_parse(http_parser *p, const char *buf, size_t len, http_request *req);

/* The value of the first header field called name (ASCII
 * case-insensitively), or NULL. */
const http_slice *http_header_get(const http_request *req, const char *name);

/* True when the comma-separated list in value holds token (ignoring case),
 * as in "Connection: keep-alive, Upgrade". */
bool http_list_has(http_slice value, const char *token);

/* true when s equals the NUL-terminated string (case-sensitive). */
bool http_slice_eq(http_slice s, const char *str);

#endif
