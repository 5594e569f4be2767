/* The descriptor table: preopens (fd_prestat_get/fd_prestat_dir_name),
 * descriptor numbering, fd_renumber, closing preopens and stdio, and a
 * second preopen (cross-directory rename and link). */
#include <dirent.h>
#include <wasi/libc.h>

#include "common.h"

static void prestats(void) {
  SECTION("prestat");
  for (int fd = 0; fd < 7; fd++) {
    __wasi_prestat_t ps;
    __wasi_errno_t e = __wasi_fd_prestat_get(fd, &ps);
    if (e) {
      printf("fd %d: prestat %s\n", fd, ename(e));
      continue;
    }
    char name[64];
    memset(name, 0, sizeof name);
    __wasi_errno_t e2 = __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, ps.u.dir.pr_name_len);
    printf("fd %d: prestat tag=%u len=%u name=%s (%s)\n", fd, ps.tag,
           (unsigned)ps.u.dir.pr_name_len, name, ename(e2));
    if (ps.u.dir.pr_name_len > 1) {
      e2 = __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, ps.u.dir.pr_name_len - 1);
      printf("fd %d: short buffer: %s\n", fd, ename(e2));
    }
    e2 = __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, 60);
    printf("fd %d: long buffer: %s\n", fd, ename(e2));
  }
  char name[8];
  RAW(__wasi_fd_prestat_dir_name(1000, (uint8_t *)name, 8));
  RAW(__wasi_fd_prestat_dir_name(1, (uint8_t *)name, 8));
}

static void numbering(void) {
  SECTION("numbering (lowest free first)");
  int a = open("/sandbox/hello.txt", O_RDONLY);
  int b = open("/sandbox/hello.txt", O_RDONLY);
  int c = open("/sandbox/hello.txt", O_RDONLY);
  printf("a=%d b=%d c=%d\n", a, b, c);
  close(b);
  int d = open("/sandbox/sub", O_RDONLY | O_DIRECTORY);
  printf("after closing b, a directory gets %d\n", d);
  close(a);
  close(c);
  close(d);
}

static void renumber(void) {
  SECTION("fd_renumber");
  int a = open("/sandbox/hello.txt", O_RDONLY);
  int b = open("/sandbox/data.bin", O_RDONLY);
  char buf[8] = {0};
  CHECK(__wasilibc_fd_renumber(a, b)); /* b now reads hello.txt; a is gone */
  CHECK(read(b, buf, 5));
  printf("read through renumbered fd: %s\n", buf);
  CHECK(read(a, buf, 1));
  CHECK(__wasilibc_fd_renumber(b, b));
  CHECK(__wasilibc_fd_renumber(b, 1000)); /* target not open */
  CHECK(__wasilibc_fd_renumber(1000, b));
  __wasi_errno_t e;
  RAW(e = __wasi_fd_renumber(1000, 1001));
  /* renumbering onto another open file: the target is closed first */
  int w = open("/sandbox/renumbered-out.txt", O_WRONLY | O_CREAT, 0644);
  int saved = open("/sandbox/keep.txt", O_WRONLY | O_CREAT, 0644);
  fflush(stdout);
  RAW(e = __wasi_fd_renumber(w, saved));
  CHECK(write(saved, "via renumbered descriptor\n", 26));
  close(saved);
  show_file("/sandbox/renumbered-out.txt");
  show_file("/sandbox/keep.txt");
  CHECK(close(b));
}

static void preopen_games(void) {
  SECTION("two preopens");
  show_file("/other/other.txt");
  CHECK(symlink("../sandbox/hello.txt", "/other/cross"));
  show_file("/other/cross");
  CHECK(open("/sandbox/../other/other.txt", O_RDONLY));

  SECTION("closing preopens and stdio");
  /* close the second preopen: paths under it no longer resolve */
  __wasi_prestat_t ps;
  RAW(__wasi_fd_prestat_get(4, &ps));
  RAW(__wasi_fd_close(4));
  RAW(__wasi_fd_prestat_get(4, &ps));
  int fd = open("/sandbox/hello.txt", O_RDONLY);
  RAW(__wasi_fd_prestat_get(fd, &ps));
  close(fd);
  fflush(stdout);
  RAW(__wasi_fd_close(0));
  char buf[4];
  CHECK(read(0, buf, 1));
}

/* Where wasync deliberately differs from wasmtime (argv[1] == "divergent"). */
static void divergent(void) {
  SECTION("rename and link across preopens");
  /* two HostDir preopens are two file systems to wasync: EXDEV (wasmtime
   * renames and links across them when the host can) */
  CHECK(rename("/sandbox/hello.txt", "/other/moved.txt"));
  CHECK(link("/sandbox/data.bin", "/other/hard.bin"));
  SECTION("lowest free descriptor first");
  /* POSIX; wasmtime does not reuse a closed preopen's or stdin's number at once */
  RAW(__wasi_fd_close(4));
  int fd = open("/sandbox/hello.txt", O_RDONLY);
  printf("next descriptor reuses 4: %d\n", fd == 4);
  RAW(__wasi_fd_close(0));
  int in = open("/sandbox/hello.txt", O_RDONLY);
  printf("closing stdin frees 0: %d\n", in == 0);
  char buf[6] = {0};
  CHECK(read(0, buf, 5));
  printf("stdin is now hello.txt: %s\n", buf);
  close(fd);
  close(in);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "divergent") == 0) {
    divergent();
    return 0;
  }
  prestats();
  numbering();
  renumber();
  preopen_games();
  return 0;
}
