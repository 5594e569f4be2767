/* Reads a small file, sleeps one second, prints what it read: one of the
 * 200 concurrent programs of tests/test_wasi_concurrency.py. */
#include "common.h"

int main(int argc, char **argv) {
  char buf[64] = {0};
  int fd = open("/sandbox/hello.txt", O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  sleep(1);
  printf("%s read %zd: %s", argc > 1 ? argv[1] : "?", n, buf);
  return 0;
}
