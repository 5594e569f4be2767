/* fd_readdir: opendir/readdir over a directory with many entries (several
 * fd_readdir calls, cookies), seekdir/telldir/rewinddir, scandir, raw
 * fd_readdir with tiny buffers, and entries changing while listing. */
#include <dirent.h>

#include "common.h"

static int cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *dtype(unsigned char t) {
  switch (t) {
    case DT_REG: return "file";
    case DT_DIR: return "dir";
    case DT_LNK: return "symlink";
    case DT_UNKNOWN: return "unknown";
    default: return "other";
  }
}

/* The sorted listing of `path`: "name type" lines; returns the count. */
static int list(const char *path, int show) {
  DIR *d = opendir(path);
  if (!d) {
    printf("opendir %s: %s\n", path, ename(errno));
    return -1;
  }
  char *names[512];
  int n = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL && n < 512) {
    char *s = malloc(strlen(e->d_name) + 16);
    sprintf(s, "%s %s", e->d_name, dtype(e->d_type));
    names[n++] = s;
  }
  int err = errno;
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp);
  printf("listing %s: %d entries, errno %s\n", path, n, ename(err));
  for (int i = 0; i < n; i++) {
    if (show) printf("  %s\n", names[i]);
    free(names[i]);
  }
  return n;
}

static void listings(void) {
  SECTION("listings");
  list("/sandbox", 1);
  list("/sandbox/sub", 1);
  list("/sandbox/empty", 1);
  list("/sandbox/many", 0);
  list("/sandbox/hello.txt", 1);
  list("/sandbox/missing", 1);
  list("/sandbox/link_to_sub", 1);
  list("/sandbox/many/subdir", 1);
}

static void many(void) {
  SECTION("many entries: every name exactly once");
  DIR *d = opendir("/sandbox/many");
  int seen[150] = {0};
  int others = 0, dots = 0, total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    total++;
    int i;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) dots++;
    else if (sscanf(e->d_name, "entry-%d-", &i) == 1 && i >= 0 && i < 150) seen[i]++;
    else others++;
  }
  int ok = 1;
  for (int i = 0; i < 150; i++) ok &= seen[i] == 1;
  printf("total=%d dots=%d others=%d each once=%d\n", total, dots, others, ok);

  SECTION("telldir, seekdir, rewinddir");
  rewinddir(d);
  char first[32][128];
  long locs[32];
  for (int i = 0; i < 32; i++) {
    locs[i] = telldir(d);
    e = readdir(d);
    snprintf(first[i], sizeof first[i], "%s", e ? e->d_name : "(end)");
  }
  int same = 1;
  for (int i = 31; i >= 0; i -= 5) {
    seekdir(d, locs[i]);
    e = readdir(d);
    if (!e || strcmp(e->d_name, first[i]) != 0) same = 0;
  }
  printf("seekdir back to 7 remembered positions gives the same entries: %d\n", same);
  seekdir(d, locs[10]);
  int rest = 0;
  while (readdir(d)) rest++;
  printf("entries from the 11th on: %d\n", rest);
  rewinddir(d);
  rest = 0;
  while (readdir(d)) rest++;
  printf("after rewinddir: %d\n", rest);
  printf("readdir at the end again: %s\n", readdir(d) ? "entry" : "NULL");
  closedir(d);

  SECTION("scandir");
  struct dirent **list;
  int n = scandir("/sandbox/sub", &list, NULL, alphasort);
  printf("scandir = %d\n", n);
  for (int i = 0; i < n; i++) {
    printf("  %s %s\n", list[i]->d_name, dtype(list[i]->d_type));
    free(list[i]);
  }
  if (n >= 0) free(list);
}

static void raw(void) {
  SECTION("raw fd_readdir");
  int fd = open("/sandbox/sub", O_RDONLY | O_DIRECTORY);
  uint8_t buf[4096];
  __wasi_size_t used = 0;
  RAW(__wasi_fd_readdir(fd, buf, sizeof buf, 0, &used));
  /* walk the entries; follow d_next cookies one entry at a time */
  int count = 0;
  size_t off = 0;
  char names[16][64];
  __wasi_dircookie_t cookies[16];
  while (off + sizeof(__wasi_dirent_t) <= used && count < 16) {
    __wasi_dirent_t ent;
    memcpy(&ent, buf + off, sizeof ent);
    snprintf(names[count], sizeof names[count], "%.*s", (int)ent.d_namlen,
             (char *)buf + off + sizeof ent);
    cookies[count] = ent.d_next;
    count++;
    off += sizeof ent + ent.d_namlen;
  }
  printf("entries in one call: %d, buffer filled exactly: %d\n", count, off == used);
  /* continuing from each entry's d_next gives the following entry */
  int chain = 1;
  for (int i = 0; i + 1 < count; i++) {
    __wasi_size_t u = 0;
    __wasi_fd_readdir(fd, buf, sizeof buf, cookies[i], &u);
    __wasi_dirent_t ent;
    memcpy(&ent, buf, sizeof ent);
    if (u < sizeof ent || strncmp((char *)buf + sizeof ent, names[i + 1], ent.d_namlen) != 0)
      chain = 0;
  }
  printf("d_next continues with the next entry: %d\n", chain);
  __wasi_size_t u = 99;
  RAW(__wasi_fd_readdir(fd, buf, sizeof buf, cookies[count - 1], &u));
  printf("after the last cookie: %u bytes\n", (unsigned)u);
  /* a buffer smaller than one entry: filled to the brim (truncated entry) */
  RAW(__wasi_fd_readdir(fd, buf, 10, 0, &u));
  printf("10-byte buffer: %u bytes\n", (unsigned)u);
  RAW(__wasi_fd_readdir(fd, buf, 0, 0, &u));
  printf("0-byte buffer: %u bytes\n", (unsigned)u);
  RAW(__wasi_fd_readdir(fd, buf, sizeof(__wasi_dirent_t) + 1, 0, &u));
  printf("header+1 buffer: %u bytes\n", (unsigned)u);
  RAW(__wasi_fd_readdir(1000, buf, sizeof buf, 0, &u));
  int file = open("/sandbox/hello.txt", O_RDONLY);
  RAW(__wasi_fd_readdir(file, buf, sizeof buf, 0, &u));
  RAW(__wasi_fd_readdir(1, buf, sizeof buf, 0, &u));
  close(file);
  close(fd);
  /* the preopen itself */
  RAW(__wasi_fd_readdir(3, buf, sizeof buf, 0, &u));
  printf("preopen listing non-empty: %d\n", u > 0);
}

static void changing(void) {
  SECTION("changes between listings");
  mkdir("/sandbox/changing", 0755);
  for (int i = 0; i < 5; i++) {
    char p[64];
    snprintf(p, sizeof p, "/sandbox/changing/f%d", i);
    close(open(p, O_CREAT | O_WRONLY, 0644));
  }
  list("/sandbox/changing", 1);
  unlink("/sandbox/changing/f2");
  mkdir("/sandbox/changing/newdir", 0755);
  symlink("f0", "/sandbox/changing/lnk");
  list("/sandbox/changing", 1);
  DIR *d = opendir("/sandbox/changing");
  int before = 0;
  while (readdir(d)) before++;
  close(open("/sandbox/changing/late", O_CREAT | O_WRONLY, 0644));
  rewinddir(d);
  int after = 0;
  while (readdir(d)) after++;
  printf("rewinddir sees a new entry: %d -> %d\n", before, after);
  closedir(d);
}

int main(void) {
  listings();
  many();
  raw();
  changing();
  return 0;
}
