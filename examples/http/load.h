/* load.h - the load generator behind `weft_http --load`.
 *
 * It runs in a process of its own, forked before either side starts a weft
 * runtime, so that the server is measured alone: the two do not share a
 * scheduler. The generator runs one worker, pinned to CPU 1 when there are
 * two CPUs; a one-worker server is pinned to CPU 0, a server with several
 * workers keeps every CPU (and so shares CPU 1 with the generator).
 */
#ifndef WEFT_EXAMPLE_HTTP_LOAD_H
#define WEFT_EXAMPLE_HTTP_LOAD_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct http_load_args {
    int port;        /* the server's port on 127.0.0.1 */
    unsigned conns;  /* connections, one task each */
    double seconds;  /* how long the run lasts */
    int signal_fd;   /* a signalfd for SIGINT/SIGTERM (blocked), which end the run early */
    bool pin_server; /* pin the calling process (the server) to CPU 0 */
} http_load_args;

/* Forks the load generator: conns keep-alive connections, each sending
 * GET / and waiting for the answer, over and over for the given time. It
 * then prints requests/s and latency percentiles and exits 0 (1 when a
 * request failed or none succeeded). The generator is one weft worker,
 * pinned to CPU 1, and with pin_server the calling process is pinned to CPU
 * 0 (when there are two CPUs). Returns the generator's pid, or -errno. Call
 * it before starting a runtime. */
pid_t http_load_start(const http_load_args *a, int listen_fd);

#endif
