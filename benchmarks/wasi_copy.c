/* File copy for benchmarks/bench_wasi.py: copy argv[1] to argv[2] with 64 KiB read() and
 * write() calls (POSIX I/O, no stdio buffering), then print the number of bytes copied.
 *
 * Every read and every write is one WASI call (fd_read / fd_write with one iovec), so a
 * 100 MB file costs 1,600 of each plus the end-of-file read.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define BUF_SIZE 65536

static char buf[BUF_SIZE];

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOURCE DEST\n", argc > 0 ? argv[0] : "copy");
        return 2;
    }
    int in = open(argv[1], O_RDONLY);
    if (in < 0) {
        perror(argv[1]);
        return 1;
    }
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        perror(argv[2]);
        return 1;
    }
    long long total = 0;
    for (;;) {
        ssize_t n = read(in, buf, BUF_SIZE);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0) {
                perror("write");
                return 1;
            }
            done += w;
        }
        total += n;
    }
    if (close(out) != 0 || close(in) != 0) {
        perror("close");
        return 1;
    }
    printf("%lld\n", total);
    return 0;
}
