/* i64 and double arithmetic: 64-bit hashing and PRNGs, division and
 * remainder of signed/unsigned 64-bit values, bit counting, modular
 * exponentiation, integer square roots, and floating-point series. */
/* Keep a*b+c as two roundings even when the compiler constant-folds it. */
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <stdint.h>
#include <stdio.h>

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s) { h ^= (unsigned char)*s++; h *= 0x100000001b3ull; }
    return h;
}

static uint64_t xorshift64star(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m) {
    uint64_t r = 0;
    a %= m;
    while (b) {
        if (b & 1) r = (r + a) % m;   /* m < 2^63 so no overflow */
        a = (a << 1) % m;
        b >>= 1;
    }
    return r;
}

static uint64_t powmod(uint64_t b, uint64_t e, uint64_t m) {
    uint64_t r = 1 % m;
    for (b %= m; e; e >>= 1) {
        if (e & 1) r = mulmod(r, b, m);
        b = mulmod(b, b, m);
    }
    return r;
}

static int miller_rabin(uint64_t n) {
    static const uint64_t bases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
    if (n < 2) return 0;
    for (int i = 0; i < 12; i++) if (n % bases[i] == 0) return n == bases[i];
    uint64_t d = n - 1;
    int s = 0;
    while ((d & 1) == 0) { d >>= 1; s++; }
    for (int i = 0; i < 12; i++) {
        uint64_t x = powmod(bases[i], d, n);
        if (x == 1 || x == n - 1) continue;
        int composite = 1;
        for (int r = 1; r < s && composite; r++) {
            x = mulmod(x, x, n);
            if (x == n - 1) composite = 0;
        }
        if (composite) return 0;
    }
    return 1;
}

static uint64_t isqrt64(uint64_t n) {
    uint64_t x = n, y = (x + 1) / 2;
    if (n < 2) return n;
    while (y < x) { x = y; y = (x + n / x) / 2; }
    return x;
}

static uint64_t rotl64(uint64_t x, int k) { return (x << (k & 63)) | (x >> ((64 - k) & 63)); }

static double leibniz_pi(int terms) {
    double s = 0.0;
    for (int k = 0; k < terms; k++) s += (k & 1 ? -1.0 : 1.0) / (2.0 * k + 1.0);
    return 4.0 * s;
}

static double simpson(double (*f)(double), double a, double b, int n) {
    double h = (b - a) / n, s = f(a) + f(b);
    for (int i = 1; i < n; i++) s += f(a + i * h) * (i & 1 ? 4.0 : 2.0);
    return s * h / 3.0;
}

static double gauss(double x) { return exp(-x * x); }

static double newton_cbrt(double v) {
    double x = v > 1.0 ? v / 3.0 : 1.0;
    for (int i = 0; i < 60; i++) x = x - (x * x * x - v) / (3.0 * x * x);
    return x;
}

int main(void) {
    const char *words[] = {"", "a", "wasync", "WebAssembly", "asyncify all the things"};
    for (int i = 0; i < 5; i++)
        printf("fnv1a64(\"%s\") = %016llx\n", words[i], (unsigned long long)fnv1a64(words[i]));

    uint64_t st = 88172645463325252ull, sm = 42;
    uint64_t acc = 0;
    for (int i = 0; i < 100000; i++) acc ^= rotl64(xorshift64star(&st), i & 63) + splitmix64(&sm);
    printf("prng mix = %016llx\n", (unsigned long long)acc);

    int64_t sv[] = {INT64_MIN + 1, -9000000000000000000ll, -123456789012345ll, -7, 7, 987654321987654ll, INT64_MAX};
    int64_t dv[] = {-1000000007ll, -3, 3, 10, 4294967311ll};
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 5; j++)
            printf("%lld / %lld = %lld r %lld; u: %llu %% %llu = %llu\n",
                   (long long)sv[i], (long long)dv[j], (long long)(sv[i] / dv[j]), (long long)(sv[i] % dv[j]),
                   (unsigned long long)sv[i], (unsigned long long)dv[j],
                   (unsigned long long)((uint64_t)sv[i] % (uint64_t)dv[j]));

    uint64_t bits = 0x0123456789abcdefull;
    printf("popcount=%d clz=%d ctz=%d bswap=%016llx\n", __builtin_popcountll(bits),
           __builtin_clzll(bits), __builtin_ctzll(bits << 4), (unsigned long long)__builtin_bswap64(bits));

    uint64_t candidates[] = {1000000007ull, 998244353ull, 4294967297ull, 2305843009213693951ull,
                             1000000000000000003ull, 1000000000000000001ull, 561ull, 3215031751ull};
    for (int i = 0; i < 8; i++)
        printf("is_prime(%llu) = %d, isqrt = %llu\n", (unsigned long long)candidates[i],
               miller_rabin(candidates[i]), (unsigned long long)isqrt64(candidates[i]));
    printf("2^(10^18) mod 1e9+7 = %llu\n",
           (unsigned long long)powmod(2, 1000000000000000000ull, 1000000007ull));

    printf("leibniz pi (1e6 terms) = %.12f\n", leibniz_pi(1000000));
    printf("simpson exp(-x^2) on [0,3] = %.12f\n", simpson(gauss, 0.0, 3.0, 1000));
    printf("sqrt(2) = %.15f, cbrt(1000) = %.12f\n", sqrt(2.0), newton_cbrt(1000.0));
    printf("floor/ceil/trunc/round(-2.5) = %.1f %.1f %.1f %.1f\n", floor(-2.5), ceil(-2.5), trunc(-2.5), round(-2.5));
    printf("fmod(1e10, 7.5) = %.6f, ldexp(0.75, 70) = %.6e\n", fmod(1e10, 7.5), ldexp(0.75, 70));
    double big = 9007199254740993.0; /* 2^53 + 1 rounds */
    printf("(int64)2^53+1 = %lld, (uint64)1.8e19 = %llu, (int32)-3.99 = %d\n", (long long)big,
           (unsigned long long)1.8e19, (int)-3.99);
    float f = 1.0f;
    for (int i = 0; i < 30; i++) f = f * 1.1f + 0.01f;
    printf("float recurrence = %.6f\n", (double)f);
    return 0;
}
