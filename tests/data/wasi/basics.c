/* Arguments, environment, clocks, randomness, sched_yield, sleeping,
 * poll_oneoff (clock and fd subscriptions), standard streams and proc_exit.
 *
 * argv[1], if given, is the exit status (through exit(), i.e. proc_exit);
 * argv[2] == "raw" exits with a raw __wasi_proc_exit instead (no stdio flush,
 * so everything printed before is flushed by hand first).  "exit N [raw]"
 * only exits; "enums" passes out-of-range enum values. */
#include <poll.h>
#include <sched.h>
#include <time.h>

#include "common.h"

extern char **environ;

static long long ns_of(struct timespec ts) {
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ns_of(ts);
}

static void args_and_environ(int argc, char **argv) {
  SECTION("args");
  printf("argc=%d\n", argc);
  for (int i = 0; i < argc; i++) printf("argv[%d]=\"%s\"\n", i, argv[i]);
  __wasi_size_t count, size;
  RAW(__wasi_args_sizes_get(&count, &size));
  printf("args_sizes_get: count=%u size=%u\n", (unsigned)count, (unsigned)size);

  SECTION("environ");
  for (char **e = environ; *e; e++) printf("env \"%s\"\n", *e);
  RAW(__wasi_environ_sizes_get(&count, &size));
  printf("environ_sizes_get: count=%u size=%u\n", (unsigned)count, (unsigned)size);
  const char *k = getenv("WASYNC_KEY");
  printf("getenv(WASYNC_KEY)=%s\n", k ? k : "(null)");
  printf("getenv(MISSING)=%s\n", getenv("MISSING") ? "set" : "(null)");
}

static void clocks(void) {
  SECTION("clocks");
  struct timespec ts;
  CHECK(clock_gettime(CLOCK_REALTIME, &ts));
  printf("realtime after 2020: %d\n", ns_of(ts) > 1577836800LL * 1000000000LL);
  long long prev = mono_ns();
  int monotonic = 1;
  for (int i = 0; i < 1000; i++) {
    long long now = mono_ns();
    if (now < prev) monotonic = 0;
    prev = now;
  }
  printf("monotonic never goes back: %d\n", monotonic);
  CHECK(clock_getres(CLOCK_REALTIME, &ts));
  printf("realtime resolution positive and <= 1s: %d\n", ns_of(ts) > 0 && ns_of(ts) <= 1000000000LL);
  CHECK(clock_getres(CLOCK_MONOTONIC, &ts));
  printf("monotonic resolution positive and <= 1s: %d\n", ns_of(ts) > 0 && ns_of(ts) <= 1000000000LL);
  __wasi_timestamp_t t;
  RAW(__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t));
  time_t now = time(NULL);
  printf("time() after 2020: %d\n", now > 1577836800);
}

static void randomness(void) {
  SECTION("random");
  unsigned char a[64], b[64];
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  CHECK(getentropy(a, sizeof a));
  CHECK(getentropy(b, sizeof b));
  int nonzero = 0;
  for (size_t i = 0; i < sizeof a; i++) nonzero |= a[i];
  printf("random bytes not all zero: %d\n", nonzero != 0);
  printf("two draws differ: %d\n", memcmp(a, b, sizeof a) != 0);
  RAW(__wasi_random_get(a, 0));
  CHECK(getentropy(a, 257)); /* wasi-libc refuses more than 256 bytes itself */
  unsigned r1 = (unsigned)arc4random(), r2 = (unsigned)arc4random();
  printf("arc4random varies: %d\n", r1 != r2 || r1 != (unsigned)arc4random());
}

static void sleeping(void) {
  SECTION("sched_yield and sleeping");
  CHECK(sched_yield());
  long long t0 = mono_ns();
  struct timespec req = {0, 30 * 1000000L};
  CHECK(nanosleep(&req, NULL));
  long long t1 = mono_ns();
  printf("nanosleep 30ms slept >= 30ms: %d\n", t1 - t0 >= 30000000LL);
  CHECK(usleep(20000));
  long long t2 = mono_ns();
  printf("usleep 20ms slept >= 20ms: %d\n", t2 - t1 >= 20000000LL);
  struct timespec abs;
  clock_gettime(CLOCK_MONOTONIC, &abs);
  abs.tv_nsec += 25 * 1000000L;
  if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
  CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL));
  long long t3 = mono_ns();
  printf("absolute monotonic sleep reached its deadline: %d\n", t3 >= ns_of(abs));
  clock_gettime(CLOCK_REALTIME, &abs);
  abs.tv_nsec += 25 * 1000000L;
  if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
  printf("clock_nanosleep(REALTIME, ABSTIME) = %d\n", clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &abs, NULL));
  struct timespec zero = {0, 0};
  CHECK(nanosleep(&zero, NULL));
  struct timespec bad = {0, 2000000000L};
  CHECK(nanosleep(&bad, NULL));
  CHECK(sleep(0));
}

static void raw_poll(void) {
  SECTION("poll_oneoff");
  __wasi_subscription_t subs[3];
  __wasi_event_t events[3];
  __wasi_size_t n = 99;
  memset(subs, 0, sizeof subs);
  memset(events, 0, sizeof events);
  /* two relative clocks: only the earlier fires */
  subs[0].userdata = 11;
  subs[0].u.tag = __WASI_EVENTTYPE_CLOCK;
  subs[0].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  subs[0].u.u.clock.timeout = 10 * 1000000ULL;
  subs[1].userdata = 22;
  subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
  subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  subs[1].u.u.clock.timeout = 5ULL * 1000000000ULL;
  long long t0 = mono_ns();
  RAW(__wasi_poll_oneoff(subs, events, 2, &n));
  long long t1 = mono_ns();
  printf("nevents=%u userdata=%llu error=%s type=%u waited>=10ms:%d <2s:%d\n", (unsigned)n,
         (unsigned long long)events[0].userdata, ename(events[0].error), events[0].type,
         t1 - t0 >= 10000000LL, t1 - t0 < 2000000000LL);
  /* an absolute deadline already in the past fires at once */
  subs[0].userdata = 33;
  subs[0].u.u.clock.timeout = 1;
  subs[0].u.u.clock.flags = __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME;
  RAW(__wasi_poll_oneoff(subs, events, 1, &n));
  printf("nevents=%u userdata=%llu error=%s\n", (unsigned)n,
         (unsigned long long)events[0].userdata, ename(events[0].error));
  /* a zero timeout */
  subs[0].userdata = 44;
  subs[0].u.u.clock.timeout = 0;
  subs[0].u.u.clock.flags = 0;
  RAW(__wasi_poll_oneoff(subs, events, 1, &n));
  printf("nevents=%u userdata=%llu error=%s\n", (unsigned)n,
         (unsigned long long)events[0].userdata, ename(events[0].error));
  /* no subscriptions at all */
  RAW(__wasi_poll_oneoff(subs, events, 0, &n));
  /* fd subscriptions: stdout is writable; a clock bounds the wait */
  memset(subs, 0, sizeof subs);
  subs[0].userdata = 55;
  subs[0].u.tag = __WASI_EVENTTYPE_FD_WRITE;
  subs[0].u.u.fd_write.file_descriptor = 1;
  subs[1].userdata = 66;
  subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
  subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  subs[1].u.u.clock.timeout = 5ULL * 1000000000ULL;
  RAW(__wasi_poll_oneoff(subs, events, 2, &n));
  printf("nevents=%u userdata=%llu error=%s type=%u\n", (unsigned)n,
         (unsigned long long)events[0].userdata, ename(events[0].error), events[0].type);
}

static void libc_poll(void) {
  SECTION("poll()");
  struct pollfd p[2];
  p[0].fd = 0;
  p[0].events = POLLIN;
  p[0].revents = 0;
  CHECK(poll(p, 1, 5000));
  printf("stdin revents POLLIN=%d\n", !!(p[0].revents & POLLIN));
  p[0].fd = 1;
  p[0].events = POLLOUT;
  p[0].revents = 0;
  CHECK(poll(p, 1, 5000));
  printf("stdout revents POLLOUT=%d\n", !!(p[0].revents & POLLOUT));
  int fd;
  OPEN(fd, open("/sandbox/hello.txt", O_RDONLY));
  p[0].fd = fd;
  p[0].events = POLLIN;
  p[0].revents = 0;
  CHECK(poll(p, 1, 5000));
  printf("file POLLIN=%d\n", !!(p[0].revents & POLLIN));
  p[0].events = POLLOUT;
  p[0].revents = 0;
  CHECK(poll(p, 1, 5000));
  printf("read-only file POLLOUT=%d\n", !!(p[0].revents & POLLOUT));
  __wasi_subscription_t sub;
  __wasi_event_t ev;
  __wasi_size_t n = 0;
  memset(&sub, 0, sizeof sub);
  memset(&ev, 0, sizeof ev);
  sub.userdata = 88;
  sub.u.tag = __WASI_EVENTTYPE_FD_READ;
  sub.u.u.fd_read.file_descriptor = fd;
  RAW(__wasi_poll_oneoff(&sub, &ev, 1, &n));
  /* (nbytes is not compared: wasmtime says 1 for a file, wasync 0) */
  printf("file fd_read: nevents=%u userdata=%llu error=%s type=%u flags=%u\n",
         (unsigned)n, (unsigned long long)ev.userdata, ename(ev.error), ev.type,
         ev.fd_readwrite.flags);
  close(fd);
  long long t0 = mono_ns();
  CHECK(poll(NULL, 0, 15));
  printf("poll(NULL, 0, 15) waited >= 15ms: %d\n", mono_ns() - t0 >= 15000000LL);
}

static void streams(void) {
  SECTION("stdin");
  char buf[256];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(0, buf + total, sizeof buf - 1 - total);
    if (n <= 0) {
      printf("read -> %zd\n", n);
      break;
    }
    total += (size_t)n;
  }
  buf[total] = 0;
  printf("stdin (%zu bytes): %s\n", total, buf);
  CHECK(read(0, buf, 10)); /* at the end: 0 */
  SECTION("stdout/stderr");
  CHECK(write(1, "", 0));
  fflush(stdout);
  CHECK(write(1, "direct write\n", 13));
  fprintf(stderr, "to stderr %d\n", 42);
  CHECK(write(2, "raw stderr\n", 11));
  __wasi_fdstat_t st;
  for (int fd = 0; fd < 3; fd++) {
    RAW(__wasi_fd_fdstat_get(fd, &st));
    /* (rights are not compared: see test_wasi_conformance.py) */
    printf("fd %d: filetype=%s flags=%u read=%d write=%d seek=%d\n", fd,
           wasi_ftype_name(st.fs_filetype), st.fs_flags,
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_READ),
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_WRITE),
           !!(st.fs_rights_base & (__WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL)));
  }
  CHECK(lseek(0, 0, SEEK_CUR));
  CHECK(write(0, "x", 1));
  CHECK(read(1, buf, 1));
  CHECK(isatty(1));
}

/* Out-of-range enum values: wasmtime traps ("Invalid enum value") where the
 * WASI function should return EINVAL; run on its own (argv[1] == "enums"). */
static void invalid_enums(void) {
  SECTION("invalid enum values");
  __wasi_timestamp_t t;
  RAW(__wasi_clock_time_get(99, 1, &t));
  RAW(__wasi_clock_res_get(99, &t));
  int fd = open("/sandbox/hello.txt", O_RDONLY);
  __wasi_filesize_t pos;
  RAW(__wasi_fd_seek(fd, 0, 7, &pos));
  RAW(__wasi_fd_advise(fd, 0, 0, 9));
  close(fd);
}

/* Where wasync deliberately differs from wasmtime (argv[1] == "divergent"). */
static void divergent(void) {
  SECTION("bad descriptors in poll_oneoff");
  /* wasmtime fails the whole call with EBADF; wasync reports the error in the
   * subscription's event, as the WASI event record provides, so that poll()
   * sets POLLNVAL for that descriptor (POSIX) */
  __wasi_subscription_t subs[2];
  __wasi_event_t events[2];
  __wasi_size_t n = 0;
  memset(subs, 0, sizeof subs);
  memset(events, 0, sizeof events);
  subs[0].userdata = 77;
  subs[0].u.tag = __WASI_EVENTTYPE_FD_READ;
  subs[0].u.u.fd_read.file_descriptor = 1234;
  subs[1].userdata = 66;
  subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
  subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  subs[1].u.u.clock.timeout = 5ULL * 1000000000ULL;
  RAW(__wasi_poll_oneoff(subs, events, 2, &n));
  printf("nevents=%u userdata=%llu error=%s type=%u\n", (unsigned)n,
         (unsigned long long)events[0].userdata, ename(events[0].error), events[0].type);
  struct pollfd p = {1234, POLLIN, 0};
  CHECK(poll(&p, 1, 0));
  printf("revents POLLNVAL=%d\n", !!(p.revents & POLLNVAL));
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "enums") == 0) {
    invalid_enums();
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "divergent") == 0) {
    divergent();
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "exit") == 0) {
    /* just the exit status: "exit N" through exit(), "exit N raw" through proc_exit */
    int code = atoi(argv[2]);
    printf("exiting with %d\n", code);
    fflush(stdout);
    if (argc > 3) __wasi_proc_exit((__wasi_exitcode_t)code);
    exit(code);
  }
  args_and_environ(argc, argv);
  clocks();
  randomness();
  sleeping();
  raw_poll();
  libc_poll();
  streams();
  int code = argc > 1 ? atoi(argv[1]) : 0;
  printf("exiting with %d\n", code);
  if (argc > 2 && strcmp(argv[2], "raw") == 0) {
    fflush(stdout);
    __wasi_proc_exit((__wasi_exitcode_t)code);
  }
  exit(code);
}
