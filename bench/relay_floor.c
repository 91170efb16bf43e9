/*
 * bench/relay_floor.c: the cheapest relay a TCP proxy can be, as a yardstick for bench/proxy.sh.
 *
 * It accepts a client, connects to the backend and copies bytes both ways with epoll,
 * read() and write(): no protocol parsing, no authentication of its own, no masking, no
 * statistics. Whatever CPU it spends a transaction is the kernel's cost of one more TCP hop,
 * the floor under any real proxy (PgBouncer or pgclone) on the same machine.
 *
 *   relay_floor LISTEN_PORT BACKEND_PORT [THREADS]
 *
 * Each of THREADS (default 1) threads has its own epoll and its own SO_REUSEPORT listener
 * on 127.0.0.1:LISTEN_PORT. Not a product: a bench tool; it exits on the first error it
 * does not expect.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct end {
    int fd;
    struct end *peer;
};

static int listen_port, backend_port;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void close_pair(int ep, struct end *e) {
    struct end *p = e->peer;
    epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    close(e->fd);
    close(p->fd);
    /* Not freed: the other end may still be in this epoll_wait batch. A bench run makes a
     * few hundred connections; the leak is bounded by that. */
    e->fd = -1;
    p->fd = -1;
}

/* Writes all of buf to fd; the peer is a loopback socket with room, so a short write only
 * waits briefly (blocking mode keeps this tool small). */
static int write_all(int fd, const char *buf, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        n -= w;
    }
    return 0;
}

static void *loop(void *unused) {
    (void)unused;
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static __thread char buf[65536];
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct end *e = events[i].data.ptr;
            if (e == NULL) {
                int cfd = accept(lfd, NULL, NULL);
                if (cfd < 0) continue;
                int bfd = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons((uint16_t)backend_port)};
                b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (connect(bfd, (struct sockaddr *)&b, sizeof b) < 0) {
                    close(cfd);
                    close(bfd);
                    continue;
                }
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct end *c = malloc(sizeof *c), *s = malloc(sizeof *s);
                c->fd = cfd; c->peer = s;
                s->fd = bfd; s->peer = c;
                struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                struct epoll_event se = {.events = EPOLLIN, .data.ptr = s};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
                epoll_ctl(ep, EPOLL_CTL_ADD, bfd, &se);
                continue;
            }
            if (e->fd < 0) continue;
            ssize_t r = read(e->fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                close_pair(ep, e);
                continue;
            }
            if (write_all(e->peer->fd, buf, r) < 0) close_pair(ep, e);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT BACKEND_PORT [THREADS]\n", argv[0]);
        return 2;
    }
    listen_port = atoi(argv[1]);
    backend_port = atoi(argv[2]);
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    pthread_t t;
    for (int i = 1; i < threads; i++) pthread_create(&t, NULL, loop, NULL);
    loop(NULL);
    return 0;
}
