/* Shared helpers of the WASI conformance programs (tests/test_wasi_conformance.py).
 *
 * Everything a program prints must be deterministic: return values, errno
 * names, contents; never raw timestamps, inode numbers or random bytes. */
#ifndef WASYNC_WASI_COMMON_H
#define WASYNC_WASI_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wasi/api.h>

/* wasi-libc's errno values are WASI's errno numbers, so one table serves both
 * libc calls and raw __wasi_* calls. */
static const char *ename(int e) {
  switch (e) {
    case 0: return "OK";
    case __WASI_ERRNO_2BIG: return "E2BIG";
    case __WASI_ERRNO_ACCES: return "EACCES";
    case __WASI_ERRNO_AGAIN: return "EAGAIN";
    case __WASI_ERRNO_BADF: return "EBADF";
    case __WASI_ERRNO_BUSY: return "EBUSY";
    case __WASI_ERRNO_EXIST: return "EEXIST";
    case __WASI_ERRNO_FAULT: return "EFAULT";
    case __WASI_ERRNO_FBIG: return "EFBIG";
    case __WASI_ERRNO_ILSEQ: return "EILSEQ";
    case __WASI_ERRNO_INVAL: return "EINVAL";
    case __WASI_ERRNO_IO: return "EIO";
    case __WASI_ERRNO_ISDIR: return "EISDIR";
    case __WASI_ERRNO_LOOP: return "ELOOP";
    case __WASI_ERRNO_MLINK: return "EMLINK";
    case __WASI_ERRNO_NAMETOOLONG: return "ENAMETOOLONG";
    case __WASI_ERRNO_NOENT: return "ENOENT";
    case __WASI_ERRNO_NOSPC: return "ENOSPC";
    case __WASI_ERRNO_NOSYS: return "ENOSYS";
    case __WASI_ERRNO_NOTDIR: return "ENOTDIR";
    case __WASI_ERRNO_NOTEMPTY: return "ENOTEMPTY";
    case __WASI_ERRNO_NOTSUP: return "ENOTSUP";
    case __WASI_ERRNO_NOTTY: return "ENOTTY";
    case __WASI_ERRNO_OVERFLOW: return "EOVERFLOW";
    case __WASI_ERRNO_PERM: return "EPERM";
    case __WASI_ERRNO_PIPE: return "EPIPE";
    case __WASI_ERRNO_ROFS: return "EROFS";
    case __WASI_ERRNO_SPIPE: return "ESPIPE";
    case __WASI_ERRNO_TXTBSY: return "ETXTBSY";
    case __WASI_ERRNO_XDEV: return "EXDEV";
    case __WASI_ERRNO_NOTCAPABLE: return "ENOTCAPABLE";
    default: {
      static char buf[16];
      snprintf(buf, sizeof buf, "E#%d", e);
      return buf;
    }
  }
}

/* A libc call: prints "expr = value" or "expr = -1 ENAME". */
#define CHECK(expr)                                                   \
  do {                                                                \
    errno = 0;                                                        \
    long check_r_ = (long)(expr);                                     \
    int check_e_ = errno;                                             \
    if (check_r_ < 0)                                                 \
      printf("%s = %ld %s\n", #expr, check_r_, ename(check_e_));      \
    else                                                              \
      printf("%s = %ld\n", #expr, check_r_);                          \
  } while (0)

/* A libc call returning a descriptor (or -1): prints "fd" rather than its
 * number, and keeps it in `var`. */
#define OPEN(var, expr)                                               \
  do {                                                                \
    errno = 0;                                                        \
    (var) = (expr);                                                   \
    int open_e_ = errno;                                              \
    if ((var) < 0)                                                    \
      printf("%s = -1 %s\n", #expr, ename(open_e_));                  \
    else                                                              \
      printf("%s = fd\n", #expr);                                     \
  } while (0)

/* A raw __wasi_* call: prints "expr -> ENAME" (or OK). */
#define RAW(expr)                                                     \
  do {                                                                \
    __wasi_errno_t raw_e_ = (expr);                                   \
    printf("%s -> %s\n", #expr, ename(raw_e_));                       \
  } while (0)

/* The whole content of `path` ("<ENAME>" if it cannot be read). */
static void show_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    printf("content %s: <%s>\n", path, ename(errno));
    return;
  }
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  printf("content %s (%zu bytes): ", path, n);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c >= 32 && c < 127 && c != '\\') putchar(c);
    else printf("\\x%02x", c);
  }
  putchar('\n');
}

static const char *ftype_name(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "dir";
  if (S_ISLNK(mode)) return "symlink";
  if (S_ISCHR(mode)) return "chardev";
  if (S_ISBLK(mode)) return "blockdev";
  if (S_ISSOCK(mode)) return "socket";
  return "unknown";
}

static const char *wasi_ftype_name(__wasi_filetype_t t) {
  switch (t) {
    case __WASI_FILETYPE_REGULAR_FILE: return "file";
    case __WASI_FILETYPE_DIRECTORY: return "dir";
    case __WASI_FILETYPE_SYMBOLIC_LINK: return "symlink";
    case __WASI_FILETYPE_CHARACTER_DEVICE: return "chardev";
    case __WASI_FILETYPE_BLOCK_DEVICE: return "blockdev";
    case __WASI_FILETYPE_SOCKET_STREAM: return "socket_stream";
    case __WASI_FILETYPE_SOCKET_DGRAM: return "socket_dgram";
    default: return "unknown";
  }
}

/* stat/lstat of `path`: type, size, nlink (no times, no inode). */
static void show_stat(const char *path, int follow) {
  struct stat st;
  errno = 0;
  int r = follow ? stat(path, &st) : lstat(path, &st);
  if (r != 0) {
    printf("%s %s: -1 %s\n", follow ? "stat" : "lstat", path, ename(errno));
    return;
  }
  /* a directory's size and link count depend on the host file system */
  if (S_ISDIR(st.st_mode))
    printf("%s %s: dir\n", follow ? "stat" : "lstat", path);
  else
    printf("%s %s: %s size=%lld nlink=%llu\n", follow ? "stat" : "lstat", path,
           ftype_name(st.st_mode), (long long)st.st_size, (unsigned long long)st.st_nlink);
}

#define SECTION(name) printf("== %s\n", name)

#endif
