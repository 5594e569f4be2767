/* Operations on open files: read/write (and vectored), pread/pwrite, seek and
 * tell, sync/datasync, advise, allocate, fdstat (flags and rights), fcntl,
 * filestat get/set_size/set_times, close, and their error paths. */
#include <sys/uio.h>
#include <time.h>

#include "common.h"

static void show_fd(int fd, const char *what) {
  __wasi_fdstat_t st;
  __wasi_errno_t e = __wasi_fd_fdstat_get(fd, &st);
  if (e) {
    printf("fdstat %s: %s\n", what, ename(e));
    return;
  }
  /* (the rights themselves are not compared: see test_wasi_conformance.py) */
  printf("fdstat %s: %s flags=%u\n", what, wasi_ftype_name(st.fs_filetype), st.fs_flags);
}

static void show_fstat(int fd, const char *what) {
  struct stat st;
  errno = 0;
  if (fstat(fd, &st) != 0) {
    printf("fstat %s: -1 %s\n", what, ename(errno));
    return;
  }
  if (S_ISDIR(st.st_mode))
    printf("fstat %s: dir\n", what);
  else
    printf("fstat %s: %s size=%lld nlink=%llu\n", what, ftype_name(st.st_mode),
           (long long)st.st_size, (unsigned long long)st.st_nlink);
}

static void read_all(int fd, const char *what) {
  char buf[512];
  CHECK(lseek(fd, 0, SEEK_SET));
  ssize_t n = read(fd, buf, sizeof buf);
  printf("%s: %zd bytes: ", what, n);
  for (ssize_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c >= 32 && c < 127) putchar(c); else printf("\\x%02x", c);
  }
  putchar('\n');
}

/* writev/readv until every buffer is done (or an error, or the end) */
static ssize_t xfer_all(int fd, struct iovec *iov, int n, int writing) {
  ssize_t total = 0;
  int i = 0;
  while (i < n) {
    if (iov[i].iov_len == 0) { i++; continue; }
    ssize_t r = writing ? writev(fd, iov + i, n - i) : readv(fd, iov + i, n - i);
    if (r <= 0) return r < 0 ? -1 : total;
    total += r;
    while (r > 0 && i < n) {
      size_t step = (size_t)r < iov[i].iov_len ? (size_t)r : iov[i].iov_len;
      iov[i].iov_base = (char *)iov[i].iov_base + step;
      iov[i].iov_len -= step;
      r -= (ssize_t)step;
      if (iov[i].iov_len == 0) i++;
    }
  }
  return total;
}

static void basic_io(void) {
  SECTION("read, write, seek, tell");
  int fd;
  OPEN(fd, open("/sandbox/work.txt", O_CREAT | O_RDWR | O_TRUNC, 0644));
  CHECK(write(fd, "0123456789", 10));
  CHECK(lseek(fd, 0, SEEK_CUR));
  CHECK(lseek(fd, 2, SEEK_SET));
  char buf[64];
  memset(buf, 0, sizeof buf);
  CHECK(read(fd, buf, 3));
  printf("read: %s\n", buf);
  CHECK(lseek(fd, 0, SEEK_CUR));
  CHECK(lseek(fd, -2, SEEK_CUR));
  CHECK(lseek(fd, -1, SEEK_END));
  CHECK(read(fd, buf, 10));
  CHECK(read(fd, buf, 10)); /* end of file */
  CHECK(lseek(fd, -100, SEEK_SET));
  CHECK(lseek(fd, -100, SEEK_END));
  CHECK(lseek(fd, 0, SEEK_CUR));
  CHECK(lseek(fd, 15, SEEK_SET)); /* past the end: a hole when written */
  CHECK(write(fd, "XY", 2));
  read_all(fd, "after a hole");
  CHECK(lseek(fd, 3, SEEK_SET));
  CHECK(write(fd, "ab", 2));
  read_all(fd, "overwritten");

  SECTION("readv, writev");
  /* Short transfers are legal, and wasmtime makes them: it only moves the
   * first non-empty buffer per call. Like any careful program, this one
   * retries until everything is through and prints the totals. */
  struct iovec iov[3];
  CHECK(lseek(fd, 0, SEEK_SET));
  iov[0].iov_base = "vec"; iov[0].iov_len = 3;
  iov[1].iov_base = ""; iov[1].iov_len = 0;
  iov[2].iov_base = "tor"; iov[2].iov_len = 3;
  printf("writev total: %zd\n", xfer_all(fd, iov, 3, 1));
  char a[4] = {0}, b[5] = {0};
  CHECK(lseek(fd, 0, SEEK_SET));
  iov[0].iov_base = a; iov[0].iov_len = 3;
  iov[1].iov_base = b; iov[1].iov_len = 4;
  printf("readv total: %zd\n", xfer_all(fd, iov, 2, 0));
  printf("readv: [%s] [%s]\n", a, b);
  CHECK(readv(fd, iov, 0));

  SECTION("pread, pwrite");
  memset(buf, 0, sizeof buf);
  CHECK(lseek(fd, 1, SEEK_SET));
  CHECK(pread(fd, buf, 4, 5));
  printf("pread: %s\n", buf);
  CHECK(lseek(fd, 0, SEEK_CUR)); /* unchanged */
  CHECK(pwrite(fd, "PW", 2, 8));
  CHECK(lseek(fd, 0, SEEK_CUR)); /* unchanged */
  CHECK(pwrite(fd, "far", 3, 30));
  read_all(fd, "after pwrite");
  CHECK(pread(fd, buf, 10, 1000)); /* past the end: 0 */
  CHECK(pread(fd, buf, 10, -1));
  CHECK(pwrite(fd, "x", 1, -1));

  SECTION("sync, datasync, advise, allocate");
  CHECK(fsync(fd));
  CHECK(fdatasync(fd));
  printf("posix_fadvise NORMAL = %s\n", ename(posix_fadvise(fd, 0, 10, POSIX_FADV_NORMAL)));
  printf("posix_fadvise SEQUENTIAL = %s\n", ename(posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)));
  printf("posix_fadvise RANDOM = %s\n", ename(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)));
  printf("posix_fadvise WILLNEED = %s\n", ename(posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED)));
  printf("posix_fadvise DONTNEED = %s\n", ename(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)));
  printf("posix_fadvise NOREUSE = %s\n", ename(posix_fadvise(fd, 0, 0, POSIX_FADV_NOREUSE)));
  printf("posix_fadvise(len -1) = %s\n", ename(posix_fadvise(fd, 0, -1, POSIX_FADV_NORMAL)));
  printf("posix_fallocate(-1, 1) = %s\n", ename(posix_fallocate(fd, -1, 1)));

  SECTION("filestat, ftruncate");
  show_fstat(fd, "work.txt");
  CHECK(ftruncate(fd, 4));
  show_fstat(fd, "truncated to 4");
  read_all(fd, "truncated");
  CHECK(ftruncate(fd, 8));
  read_all(fd, "extended to 8");
  CHECK(ftruncate(fd, -1));
  CHECK(lseek(fd, 0, SEEK_END));

  SECTION("futimens");
  struct stat st;
  struct timespec times[2];
  times[0].tv_sec = 1000000000; times[0].tv_nsec = 123456789;
  times[1].tv_sec = 1100000000; times[1].tv_nsec = 987654321;
  CHECK(futimens(fd, times));
  fstat(fd, &st);
  printf("atime set: %d mtime set: %d\n",
         st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789,
         st.st_mtim.tv_sec == 1100000000 && st.st_mtim.tv_nsec == 987654321);
  times[0].tv_nsec = UTIME_OMIT;
  times[1].tv_sec = 1200000000; times[1].tv_nsec = 0;
  CHECK(futimens(fd, times));
  fstat(fd, &st);
  printf("atime kept: %d mtime set: %d\n",
         st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789,
         st.st_mtim.tv_sec == 1200000000 && st.st_mtim.tv_nsec == 0);
  times[0].tv_nsec = UTIME_NOW;
  times[1].tv_nsec = UTIME_NOW;
  CHECK(futimens(fd, times));
  fstat(fd, &st);
  printf("now: atime changed: %d mtime changed: %d\n", st.st_atim.tv_sec > 1500000000,
         st.st_mtim.tv_sec > 1500000000);
  CHECK(futimens(fd, NULL));
  times[0].tv_nsec = 2000000000;
  CHECK(futimens(fd, times));
  CHECK(close(fd));

  SECTION("large transfers");
  static char big[300000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + i / 251);
  OPEN(fd, open("/sandbox/big.bin", O_CREAT | O_RDWR | O_EXCL, 0644));
  size_t done = 0;
  while (done < sizeof big) {
    ssize_t n = write(fd, big + done, sizeof big - done);
    if (n <= 0) { printf("write failed %s\n", ename(errno)); break; }
    done += (size_t)n;
  }
  printf("wrote %zu\n", done);
  static char back[300000];
  lseek(fd, 0, SEEK_SET);
  done = 0;
  for (;;) {
    ssize_t n = read(fd, back + done, sizeof back - done);
    if (n <= 0) break;
    done += (size_t)n;
  }
  printf("read back %zu equal %d\n", done, memcmp(big, back, sizeof big) == 0);
  CHECK(close(fd));
  CHECK(unlink("/sandbox/big.bin"));
}

static void flags_and_rights(void) {
  SECTION("fdstat and fcntl");
  int r, w, rw, ap, d;
  show_fd(3, "preopen");
  OPEN(r, open("/sandbox/hello.txt", O_RDONLY));
  OPEN(w, open("/sandbox/wonly.txt", O_WRONLY | O_CREAT, 0644));
  OPEN(rw, open("/sandbox/rw.txt", O_RDWR | O_CREAT, 0644));
  OPEN(ap, open("/sandbox/append.txt", O_WRONLY | O_CREAT | O_APPEND, 0644));
  OPEN(d, open("/sandbox/sub", O_RDONLY | O_DIRECTORY));
  show_fd(r, "O_RDONLY");
  show_fd(w, "O_WRONLY");
  show_fd(rw, "O_RDWR");
  show_fd(ap, "O_APPEND");
  show_fd(d, "O_DIRECTORY");
  printf("F_GETFL: r=%x w=%x rw=%x ap=%x d=%x\n", fcntl(r, F_GETFL), fcntl(w, F_GETFL),
         fcntl(rw, F_GETFL), fcntl(ap, F_GETFL), fcntl(d, F_GETFL));
  CHECK(fcntl(r, F_GETFD));
  CHECK(fcntl(r, F_SETFD, FD_CLOEXEC));
  CHECK(fcntl(r, 12345));

  SECTION("O_APPEND");
  CHECK(write(ap, "one\n", 4));
  CHECK(lseek(ap, 0, SEEK_SET));
  CHECK(write(ap, "two\n", 4)); /* still at the end */
  CHECK(lseek(ap, 0, SEEK_CUR));
  show_file("/sandbox/append.txt");
  CHECK(write(rw, "abcdef", 6));
  CHECK(lseek(rw, 0, SEEK_SET));
  CHECK(fcntl(rw, F_SETFL, O_APPEND));
  printf("F_GETFL rw after F_SETFL O_APPEND: %x\n", fcntl(rw, F_GETFL));
  CHECK(write(rw, "gh", 2));
  CHECK(lseek(rw, 0, SEEK_CUR));
  show_file("/sandbox/rw.txt");
  CHECK(fcntl(rw, F_SETFL, 0));
  CHECK(lseek(rw, 0, SEEK_SET));
  CHECK(write(rw, "AB", 2));
  show_file("/sandbox/rw.txt");
  CHECK(fcntl(rw, F_SETFL, O_NONBLOCK));
  printf("F_GETFL rw after F_SETFL O_NONBLOCK: %x\n", fcntl(rw, F_GETFL));
  CHECK(fcntl(rw, F_SETFL, O_DSYNC));
  CHECK(fcntl(rw, F_SETFL, O_SYNC));
  CHECK(fcntl(d, F_SETFL, O_NONBLOCK));
  CHECK(fcntl(1, F_SETFL, O_NONBLOCK));
  printf("F_GETFL stdout: %x\n", fcntl(1, F_GETFL));
  CHECK(fcntl(1, F_SETFL, 0));

  SECTION("rights enforcement");
  char buf[16];
  CHECK(write(r, "x", 1));
  CHECK(pwrite(r, "x", 1, 0));
  CHECK(ftruncate(r, 0));
  CHECK(read(w, buf, 1));
  CHECK(pread(w, buf, 1, 0));
  CHECK(read(ap, buf, 1));
  CHECK(read(d, buf, 1));
  CHECK(write(d, "x", 1));
  CHECK(pread(d, buf, 1, 0));
  CHECK(pwrite(d, "x", 1, 0));
  CHECK(lseek(d, 0, SEEK_SET));
  CHECK(lseek(d, 0, SEEK_CUR));
  CHECK(ftruncate(d, 0));
  CHECK(fsync(d));
  CHECK(fdatasync(d));
  printf("posix_fadvise(dir) = %s\n", ename(posix_fadvise(d, 0, 0, POSIX_FADV_NORMAL)));
  CHECK(futimens(d, NULL));
  show_fstat(d, "dir");
  CHECK(fsync(r));
  CHECK(fdatasync(r));
  CHECK(futimens(r, NULL));
  CHECK(close(r));
  CHECK(close(w));
  CHECK(close(rw));
  CHECK(close(ap));
  CHECK(close(d));

  SECTION("closed and bad descriptors");
  CHECK(close(r));
  CHECK(read(r, buf, 1));
  CHECK(write(r, "x", 1));
  CHECK(lseek(r, 0, SEEK_SET));
  CHECK(fsync(r));
  CHECK(ftruncate(r, 0));
  show_fstat(r, "closed");
  show_fd(r, "closed");
  CHECK(futimens(r, NULL));
  printf("posix_fadvise(closed) = %s\n", ename(posix_fadvise(r, 0, 0, POSIX_FADV_NORMAL)));
  CHECK(fcntl(r, F_GETFL));
  CHECK(close(-1));
  CHECK(close(1000));
  __wasi_size_t n;
  RAW(__wasi_fd_read(1000, NULL, 0, &n));
  RAW(__wasi_fd_write(1000, NULL, 0, &n));
  __wasi_filesize_t pos;
  RAW(__wasi_fd_tell(1000, &pos));
  RAW(__wasi_fd_tell(1, &pos));
  RAW(__wasi_fd_tell(3, &pos));
  RAW(__wasi_fd_filestat_set_size(1000, 0));
  RAW(__wasi_fd_filestat_set_times(1000, 0, 0, __WASI_FSTFLAGS_ATIM_NOW));
  RAW(__wasi_fd_advise(1000, 0, 0, __WASI_ADVICE_NORMAL));
  RAW(__wasi_fd_datasync(1000));
  RAW(__wasi_fd_sync(1000));
  RAW(__wasi_fd_fdstat_set_flags(1000, 0));
  RAW(__wasi_fd_close(1000));
  RAW(__wasi_fd_filestat_set_times(1, 0, 0, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW));
}

/* Where wasync deliberately differs from wasmtime (argv[1] == "divergent"). */
static void divergent(void) {
  SECTION("fd_allocate");
  /* wasmtime: ENOTSUP always (WASI 0.2 has no allocate); wasync allocates */
  int fd = open("/sandbox/alloc.txt", O_CREAT | O_RDWR, 0644);
  CHECK(write(fd, "abc", 3));
  printf("posix_fallocate(0, 100) = %s\n", ename(posix_fallocate(fd, 0, 100)));
  show_fstat(fd, "after fallocate");
  printf("posix_fallocate(0, 10) = %s\n", ename(posix_fallocate(fd, 0, 10)));
  show_fstat(fd, "no shrinking");
  close(fd);
  fd = open("/sandbox/alloc.txt", O_RDONLY);
  printf("posix_fallocate(read-only) = %s\n", ename(posix_fallocate(fd, 0, 1000)));
  close(fd);
  fd = open("/sandbox/sub", O_RDONLY | O_DIRECTORY);
  printf("posix_fallocate(dir) = %s\n", ename(posix_fallocate(fd, 0, 10)));
  close(fd);
  printf("posix_fallocate(closed) = %s\n", ename(posix_fallocate(fd, 0, 1)));

  SECTION("pwrite on an O_APPEND descriptor");
  /* POSIX: the offset is honoured (wasync). Linux, and wasmtime with it,
   * append regardless of the offset. */
  fd = open("/sandbox/append.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
  CHECK(write(fd, "one\n", 4));
  CHECK(pwrite(fd, "ONE", 3, 0));
  CHECK(write(fd, "two\n", 4));
  close(fd);
  show_file("/sandbox/append.txt");
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "divergent") == 0) {
    divergent();
    return 0;
  }
  basic_io();
  flags_and_rights();
  return 0;
}
