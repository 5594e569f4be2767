// For `wasync run` tests: arguments, environment, stdin, a preopened
// directory (read one file, write another) and the exit status.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    char line[256];
    if (fgets(line, sizeof line, stdin)) printf("stdin: %s", line);
    FILE *in = fopen("/work/in.txt", "r");
    if (!in) { perror("open /work/in.txt"); return 2; }
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    fclose(in);
    FILE *out = fopen("/work/out.txt", "w");
    if (!out) { perror("open /work/out.txt"); return 3; }
    for (size_t i = 0; i < n; i++) fputc(buf[i] >= 'a' && buf[i] <= 'z' ? buf[i] - 32 : buf[i], out);
    fclose(out);
    fprintf(stderr, "copied %zu bytes\n", n);
    FILE *escape = fopen("/work/../etc/passwd", "r");
    printf("escape: %s\n", escape ? "OPENED" : "refused");
    return argc > 1 ? atoi(argv[argc - 1]) : 0;
}
