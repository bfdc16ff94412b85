/* fuzz_parse.c - a libFuzzer target for the HTTP request parser (parse.c).
 *
 * Each input is parsed as a stream of pipelined requests, first whole, then
 * fed in growing prefixes (every prefix for short inputs, a few split points
 * derived from the data for long ones), each prefix copied into a buffer of
 * exactly its size so that AddressSanitizer catches any read past the end.
 * The checks:
 *  - a result is 0 (needs more), a byte count <= the bytes given, or one of
 *    the documented error statuses;
 *  - feeding prefixes ends with the same result as parsing the whole input
 *    (a prefix never reports anything but 0 or the final answer);
 *  - every slice of a complete request lies inside the bytes it consumed.
 *
 * Built by examples/CMakeLists.txt with clang -fsanitize=fuzzer,address,
 * undefined when libFuzzer is there (the CTest test fuzz_http_parse runs it
 * for a few seconds over examples/http/corpus/). Built with
 * -DFUZZ_STANDALONE it is a plain program that runs the same checks over the
 * files named on its command line (the test http_parse_corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_parse: check failed: %s (line %d)\n", #cond, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_REQUESTS    8   /* pipelined requests followed per input */
#define EVERY_SPLIT_MAX 256 /* inputs up to this size are fed at every split */

static bool known_status(int r)
{
    return r == -400 || r == -413 || r == -414 || r == -431 || r == -501 || r == -505;
}

static bool inside(http_slice s, const char *buf, size_t len)
{
    return s.len == 0 ||
           (s.ptr >= buf && s.ptr <= buf + len && s.len <= (size_t)(buf + len - s.ptr));
}

/* Checks one result and the request it filled in. */
static void check_result(int r, const char *buf, size_t len, const http_request *req)
{
    CHECK(r >= 0 || known_status(r));
    if (r <= 0)
        return;
    size_t used = (size_t)r;
    CHECK(used <= len);
    CHECK(req->method.len > 0 && inside(req->method, buf, used));
    CHECK(req->target.len > 0 && inside(req->target, buf, used));
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->nheaders <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req->nheaders; i++) {
        CHECK(req->headers[i].name.len > 0 && inside(req->headers[i].name, buf, used));
        CHECK(inside(req->headers[i].value, buf, used));
    }
    CHECK(req->content_length <= HTTP_MAX_BODY);
    CHECK(req->body.len == req->content_length && inside(req->body, buf, used));
    CHECK(req->body.len == 0 || req->body.ptr + req->body.len == buf + used);
}

/* Parses data[0..len) whole, in a buffer of exactly len bytes. */
static int parse_whole(const uint8_t *data, size_t len)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data, len);
    http_parser p;
    http_request req;
    http_parser_init(&p);
    int r = http_parse(&p, buf, len, &req);
    check_result(r, buf, len, &req);
    free(buf);
    return r;
}

/* Feeds data[0..len) as the growing prefixes ends[0] < ends[1] < ... and
 * finally len, each in a fresh buffer of its own size; returns the first
 * non-zero result, or the last one. */
static int parse_split(const uint8_t *data, size_t len, const size_t *ends, size_t nends)
{
    http_parser p;
    http_request req;
    http_parser_init(&p);
    int r = 0;
    for (size_t k = 0; k <= nends; k++) {
        size_t n = k < nends ? ends[k] : len;
        char *buf = malloc(n ? n : 1);
        memcpy(buf, data, n);
        r = http_parse(&p, buf, n, &req);
        check_result(r, buf, n, &req);
        free(buf);
        if (r != 0)
            break;
    }
    return r;
}

/* Checks one request at the start of data[0..len); returns its size, or 0
 * when there is no complete request there. */
static size_t check_request(const uint8_t *data, size_t len)
{
    int whole = parse_whole(data, len);
    size_t ends[EVERY_SPLIT_MAX];
    size_t nends = 0;
    if (len <= EVERY_SPLIT_MAX) {
        for (size_t i = 0; i < len; i++)
            ends[nends++] = i;
    } else {
        /* A few split points from the data, kept increasing. */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i += 1 + len / 64)
            h = (h ^ data[i]) * 16777619u;
        for (size_t k = 0, at = 0; k < 8; k++) {
            h = h * 1103515245u + 12345u;
            at += 1 + (h >> 8) % (len / 8 + 1);
            if (at >= len)
                break;
            ends[nends++] = at;
        }
    }
    CHECK(parse_split(data, len, ends, nends) == whole);
    if (len > 1) /* and in two halves */
        CHECK(parse_split(data, len, (size_t[]){len / 2}, 1) == whole);
    return whole > 0 ? (size_t)whole : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    /* Pipelining: the requests one after the other. */
    for (int i = 0; i < MAX_REQUESTS && len > 0; i++) {
        size_t used = check_request(data, len);
        if (used == 0)
            break;
        data += used;
        len -= used;
    }
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t data[1 << 21];
        size_t n = fread(data, 1, sizeof data, f);
        fclose(f);
        LLVMFuzzerTestOneInput(data, n);
    }
    printf("fuzz_parse: %d inputs checked\n", argc - 1);
    return 0;
}
#endif
