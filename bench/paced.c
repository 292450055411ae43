// bench/paced.c: the paced half of bench/local-endpoint. GETs at a fixed rate
// over keep-alive connections, each timed from the moment the schedule says it
// is due to the read() that completes its answer (status line,
// Content-Length). In C because a Node client on the same cores added its own
// event loop, HTTP parser and timers to every sample: the bare server's p50
// was ~250 us through node:http and ~100 us through this loop. The schedule is
// absolute: a late tick sends what is due, and a request that waits for a free
// connection (every one busy with a slow answer) counts that wait, so a stall
// shows in the tail instead of thinning the samples taken during it
// (coordinated omission). `p99_from_write` is the same percentile timed from the
// write() instead, as this client timed before. Timer slack is 1 ns, so a
// sample holds the server's time and not the kernel's rounding of ppoll's
// timeout. Prints one JSON line: p50, p99, max, p99_from_write (us), n, rate,
// errors.
//
//   paced PORT RATE SECONDS CONNECTIONS PATH TOKEN
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXC 64
static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
struct conn { int fd; int busy; double due, t0; char buf[65536]; size_t len; };
static struct conn c[MAXC];

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(2); }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// 1: a whole response is in buf (status in *status), 0: not yet.
static int complete(struct conn *k, int *status) {
  char *end = memmem(k->buf, k->len, "\r\n\r\n", 4);
  if (end == NULL) return 0;
  size_t head = (size_t)(end - k->buf) + 4, cl = 0;
  for (char *p = k->buf; p < end; p++) {
    if ((p == k->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) { cl = strtoul(p + 15, NULL, 10); break; }
  }
  if (k->len < head + cl) return 0;
  *status = atoi(k->buf + 9);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 7) { fprintf(stderr, "usage: paced port rate seconds conns path token\n"); return 2; }
  int port = atoi(argv[1]), conns = atoi(argv[4]);
  double rate = atof(argv[2]), seconds = atof(argv[3]);
  char req[8192];
  int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-sidekey-token: %s\r\nConnection: keep-alive\r\n\r\n", argv[5], port, argv[6]);
  if (rl < 0 || rl >= (int)sizeof req) { fprintf(stderr, "request too long\n"); return 2; }
  size_t reqlen = (size_t)rl;
  if (conns > MAXC) conns = MAXC;
  long total = (long)(rate * seconds);
  double *lat = malloc(sizeof(double) * (size_t)total), *wlat = malloc(sizeof(double) * (size_t)total);
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  long sent = 0, done = 0, errors = 0;
  int rr = 0;
  for (int i = 0; i < conns; i++) { c[i].fd = dial(port); c[i].busy = 0; c[i].len = 0; }
  struct pollfd p[MAXC];
  double start = now_us();
  while (done + errors < total) {
    double t = now_us();
    int blocked = 0;
    // Send what is due, on the next idle connection (none idle: it waits for one).
    while (sent < total && t >= start + sent * 1e6 / rate) {
      int k = -1;
      for (int j = 0; j < conns; j++) { int i = (rr + j) % conns; if (!c[i].busy) { k = i; break; } }
      if (k < 0) { blocked = 1; break; }
      rr = (k + 1) % conns;
      c[k].busy = 1; c[k].len = 0; c[k].due = start + sent * 1e6 / rate; c[k].t0 = now_us();
      if (write(c[k].fd, req, reqlen) != (ssize_t)reqlen) { errors++; c[k].busy = 0; }
      sent++;
    }
    for (int i = 0; i < conns; i++) { p[i].fd = c[i].fd; p[i].events = c[i].busy ? POLLIN : 0; p[i].revents = 0; }
    // Until the next send is due; one due but every connection busy waits for an answer.
    double wait = sent < total ? start + sent * 1e6 / rate - now_us() : 1e6;
    if (wait < 0) wait = blocked ? 1e6 : 0;
    struct timespec ts = { (time_t)(wait / 1e6), (long)((wait - (time_t)(wait / 1e6) * 1e6) * 1e3) };
    int n = ppoll(p, (nfds_t)conns, &ts, NULL);
    if (n < 0 && errno != EINTR) { perror("ppoll"); return 2; }
    for (int i = 0; n > 0 && i < conns; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = read(c[i].fd, c[i].buf + c[i].len, sizeof c[i].buf - c[i].len);
      double t1 = now_us();
      if (r <= 0) { fprintf(stderr, "connection closed\n"); return 2; }
      c[i].len += (size_t)r;
      int status;
      if (complete(&c[i], &status)) {
        c[i].busy = 0;
        if (status != 200) errors++;
        else { wlat[done] = t1 - c[i].t0; lat[done++] = t1 - c[i].due; }
      }
    }
  }
  double elapsed = (now_us() - start) / 1e6;
  qsort(lat, (size_t)done, sizeof(double), cmp);
  qsort(wlat, (size_t)done, sizeof(double), cmp);
  #define Q(a, x) (done > 0 ? a[(long)((x) * done) < done ? (long)((x) * done) : done - 1] : 0)
  printf("{\"p50\":%.0f,\"p99\":%.0f,\"max\":%.0f,\"p99_from_write\":%.0f,\"n\":%ld,\"rate\":%.0f,\"errors\":%ld}\n", Q(lat, 0.5), Q(lat, 0.99), done > 0 ? lat[done - 1] : 0, Q(wlat, 0.99), done, done / elapsed, errors);
  return 0;
}
