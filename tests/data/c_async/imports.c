// A freestanding C module (no libc: its only imports are the async ones below),
// built with: zig cc --target=wasm32-wasi -nostdlib -Wl,--no-entry -fno-sanitize=undefined
// Each import may suspend; the exports exercise recursion, function pointers,
// loops with calls, locals kept across calls, and i64/f64 values.

#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("fetch") int fetch(int key);
IMPORT("fetch64") long long fetch64(long long key);
IMPORT("fetchd") double fetchd(double x);

static int fib(int n) { return n < 2 ? fetch(n) : fib(n - 1) + fib(n - 2); }
EXPORT("fib") int run_fib(int n) { return fib(n); }

typedef int (*op_t)(int);
static int twice(int x) { return 2 * fetch(x); }
static int plus_one(int x) { return fetch(x) + 1; }
static op_t volatile ops[2] = {twice, plus_one};
EXPORT("apply") int apply(int which, int x) { return ops[which & 1](x); }

EXPORT("mix") double mix(long long a, double b) {
    long long wide = fetch64(a);
    double d = fetchd(b);
    return (double)wide + d;
}

EXPORT("sum_array") int sum_array(int n) {
    volatile int buf[64];
    int count = n < 64 ? n : 64;
    for (int i = 0; i < count; i++) buf[i] = fetch(i) ^ i;
    int s = 0;
    for (int i = 0; i < count; i++) s += buf[i];
    return s;
}

EXPORT("checksum") unsigned long long checksum(int rounds) {
    unsigned long long h = 1469598103934665603ULL;
    for (int r = 0; r < rounds; r++) {
        long long v = fetch64(r);
        for (int k = 0; k < 8; k++) {
            h ^= (unsigned long long)((v >> (8 * k)) & 0xff);
            h *= 1099511628211ULL;
        }
    }
    return h;
}
