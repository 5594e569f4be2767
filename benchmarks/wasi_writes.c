/* Many small writes for benchmarks/bench_wasi.py: argv[1] (default 10000) times
 * write(1, "x\n", 2), each one WASI fd_write call on stdout; then "done N" on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long count = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    for (long i = 0; i < count; i++) {
        if (write(1, "x\n", 2) != 2) {
            perror("write");
            return 1;
        }
    }
    fprintf(stderr, "done %ld\n", count);
    return 0;
}
