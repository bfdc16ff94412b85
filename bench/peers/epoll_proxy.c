/* epoll_proxy.c - the baseline for bench/run-proxy.sh: a TCP proxy on one
 * thread with epoll (edge-triggered, no call that would say EAGAIN) and a
 * 64 KiB buffer per direction (weft_relay's default), as a careful C
 * programmer would write one without a runtime. It relays each
 * connection accepted on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM, passes an
 * end of stream on as shutdown(SHUT_WR), and closes a pair once both
 * directions have ended or either fails.
 *
 * usage: epoll_proxy PORT UPSTREAM */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF = 65536 }; /* as weft_relay's default */

/* One socket of a connection, as epoll last reported it. Edge-triggered:
 * a flag stays set until a call says EAGAIN, or reads or writes less
 * than asked (all there was, or all the room there was: new data or room
 * brings a new edge), so no call is made that would only say EAGAIN. */
typedef struct end {
    struct pair *p;
    int fd;
    bool can_read, can_write;
    bool hup; /* the peer's end of stream is signalled: no edge will follow it */
} end;

/* One direction: bytes read from `from`, not yet written to `to`. */
typedef struct way {
    end *from, *to;
    char buf[BUF];
    size_t head, tail; /* buf[head..tail) waits for `to` */
    bool eof;          /* `from` ended: pass it on once buf is empty */
    bool done;         /* passed on */
} way;

/* Both directions of a connection; each end's epoll data points at it. */
typedef struct pair {
    end client, upstream;
    way up, down;
    bool closed;
    struct pair *next_closed; /* freed after the batch that closed it */
} pair;

/* Moves what it can; false when the pair must close (an error). */
static bool pump(way *w)
{
    for (;;) {
        if (w->head < w->tail) {
            if (!w->to->can_write)
                return true;
            size_t want = w->tail - w->head;
            ssize_t n = send(w->to->fd, w->buf + w->head, want, MSG_NOSIGNAL);
            if (n < 0) {
                w->to->can_write = false;
                return errno == EAGAIN;
            }
            w->head += (size_t)n;
            if ((size_t)n < want) {
                w->to->can_write = false; /* full: the rest at the next edge */
                return true;
            }
            w->head = w->tail = 0;
        }
        if (w->eof) {
            if (!w->done) {
                shutdown(w->to->fd, SHUT_WR);
                w->done = true;
            }
            return true;
        }
        if (!w->from->can_read)
            return true;
        ssize_t n = recv(w->from->fd, w->buf, BUF, 0);
        if (n < 0) {
            w->from->can_read = false;
            return errno == EAGAIN;
        }
        if (n == 0)
            w->eof = true;
        else if (n < BUF && !w->from->hup)
            w->from->can_read = false; /* drained: more brings a new edge */
        w->tail = (size_t)n;
    }
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT UPSTREAM\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), upstream = atoi(argv[2]), one = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&at, sizeof at) < 0 || listen(l, 1024) < 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    struct epoll_event evs[256];
    for (;;) {
        pair *closed = NULL;
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                int u = connect_upstream(upstream);
                if (u < 0) {
                    close(c);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                /* Non-blocking once connected: a blocking connect to a
                 * local upstream is quick. */
                fcntl(c, F_SETFL, O_NONBLOCK);
                fcntl(u, F_SETFL, O_NONBLOCK);
                pair *p = calloc(1, sizeof *p);
                p->client = (end){.p = p, .fd = c};
                p->upstream = (end){.p = p, .fd = u};
                p->up.from = p->down.to = &p->client;
                p->up.to = p->down.from = &p->upstream;
                struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                        .data.ptr = &p->client};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                e.data.ptr = &p->upstream;
                epoll_ctl(ep, EPOLL_CTL_ADD, u, &e);
                continue;
            }
            end *x = evs[i].data.ptr;
            pair *p = x->p;
            if (p->closed)
                continue; /* closed earlier in this batch */
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                x->can_read = true; /* an error or hang-up shows in the read */
            /* An end of stream that came with the last data: the short
             * read is no sign of "drained", read on until the 0. */
            if (evs[i].events & (EPOLLRDHUP | EPOLLHUP))
                x->hup = true;
            if (evs[i].events & (EPOLLOUT | EPOLLERR))
                x->can_write = true;
            bool ok = pump(&p->up) && pump(&p->down);
            if (!ok || (p->up.done && p->down.done)) {
                close(p->client.fd); /* epoll forgets both */
                close(p->upstream.fd);
                p->closed = true;
                p->next_closed = closed;
                closed = p;
            }
        }
        while (closed) {
            pair *next = closed->next_closed;
            free(closed);
            closed = next;
        }
    }
}
