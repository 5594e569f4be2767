// wasync-cflags: -msimd128
/* 128-bit SIMD through <wasm_simd128.h>: integer and float lane arithmetic,
 * shuffles, swizzles, comparisons and bitmasks, each checked against a
 * scalar reference computation. */
/* Keep a*b+c as two roundings even when the compiler constant-folds it. */
#pragma STDC FP_CONTRACT OFF

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wasm_simd128.h>

#define N 1024

static float fa[N], fb[N];
static int32_t ia[N], ib[N];
static uint8_t bytes[N];

static float dot_simd(const float *a, const float *b, int n) {
    v128_t acc = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < n; i += 4)
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
    return wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) +
           wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3);
}

static float dot_scalar(const float *a, const float *b, int n) {
    float lanes[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i += 4)
        for (int k = 0; k < 4; k++) lanes[k] += a[i + k] * b[i + k];
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

static void saxpy_simd(float alpha, const float *x, float *y, int n) {
    v128_t va = wasm_f32x4_splat(alpha);
    for (int i = 0; i < n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_f32x4_mul(va, wasm_v128_load(x + i)), wasm_v128_load(y + i)));
}

static uint32_t checksum_i32(const int32_t *v, int n) {
    uint32_t h = 0;
    for (int i = 0; i < n; i++) h = h * 2654435761u + (uint32_t)v[i];
    return h;
}

static int count_bytes_simd(const uint8_t *p, int n, uint8_t needle) {
    v128_t nv = wasm_i8x16_splat((int8_t)needle);
    int count = 0;
    for (int i = 0; i < n; i += 16) {
        uint32_t mask = wasm_i8x16_bitmask(wasm_i8x16_eq(wasm_v128_load(p + i), nv));
        count += __builtin_popcount(mask);
    }
    return count;
}

static void print_i32x4(const char *name, v128_t v) {
    printf("%s = [%d, %d, %d, %d]\n", name, wasm_i32x4_extract_lane(v, 0), wasm_i32x4_extract_lane(v, 1),
           wasm_i32x4_extract_lane(v, 2), wasm_i32x4_extract_lane(v, 3));
}

int main(void) {
    uint32_t seed = 2024;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        fa[i] = (float)((seed >> 16) % 2000) / 1000.0f - 1.0f;
        fb[i] = (float)(i % 17) * 0.125f;
        ia[i] = (int32_t)(seed >> 3) - (1 << 27);
        ib[i] = i * 7919 - 4000000;
        bytes[i] = (uint8_t)((seed >> 11) % 37);
    }

    float ds = dot_simd(fa, fb, N), dr = dot_scalar(fa, fb, N);
    printf("dot simd=%.4f scalar=%.4f match=%d\n", (double)ds, (double)dr, ds == dr);

    static float y1[N], y2[N];
    memcpy(y1, fb, sizeof y1);
    memcpy(y2, fb, sizeof y2);
    saxpy_simd(0.5f, fa, y1, N);
    for (int i = 0; i < N; i++) y2[i] = 0.5f * fa[i] + y2[i];
    printf("saxpy match=%d y[5]=%.5f y[1000]=%.5f\n", memcmp(y1, y2, sizeof y1) == 0, (double)y1[5], (double)y1[1000]);

    static int32_t out_simd[N], out_ref[N];
    for (int i = 0; i < N; i += 4) {
        v128_t a = wasm_v128_load(ia + i), b = wasm_v128_load(ib + i);
        v128_t r = wasm_i32x4_add(wasm_i32x4_mul(a, b), wasm_i32x4_shr(a, 3));
        r = wasm_v128_xor(r, wasm_i32x4_max(a, b));
        r = wasm_v128_bitselect(r, wasm_i32x4_sub(b, a), wasm_i32x4_gt(a, b));
        wasm_v128_store(out_simd + i, r);
    }
    for (int i = 0; i < N; i++) {
        int32_t a = ia[i], b = ib[i];
        int32_t r = (int32_t)((uint32_t)a * (uint32_t)b + (uint32_t)(a >> 3));
        r ^= a > b ? a : b;
        out_ref[i] = a > b ? r : (int32_t)((uint32_t)b - (uint32_t)a);
    }
    printf("i32x4 pipeline match=%d checksum=%08x\n", memcmp(out_simd, out_ref, sizeof out_ref) == 0,
           checksum_i32(out_simd, N));

    int cs = count_bytes_simd(bytes, N, 5), cr = 0;
    for (int i = 0; i < N; i++) cr += bytes[i] == 5;
    printf("byte count simd=%d scalar=%d\n", cs, cr);

    v128_t v = wasm_i32x4_make(1, 2, 3, 4), w = wasm_i32x4_make(10, 20, 30, 40);
    print_i32x4("shuffle", wasm_i32x4_shuffle(v, w, 7, 0, 5, 2));
    v128_t rev = wasm_i8x16_swizzle(wasm_i8x16_make(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                    wasm_i8x16_make(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    print_i32x4("swizzle", rev);
    v128_t sat = wasm_u8x16_add_sat(wasm_u8x16_splat(200), wasm_u8x16_make(0, 50, 55, 56, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255));
    printf("add_sat bitmask(>=255) = %04x\n", wasm_i8x16_bitmask(wasm_i8x16_eq(sat, wasm_u8x16_splat(255))));
    v128_t f = wasm_f32x4_sqrt(wasm_f32x4_make(2.0f, 9.0f, 0.25f, 1e6f));
    printf("f32x4 sqrt = [%.6f, %.6f, %.6f, %.6f]\n", (double)wasm_f32x4_extract_lane(f, 0),
           (double)wasm_f32x4_extract_lane(f, 1), (double)wasm_f32x4_extract_lane(f, 2),
           (double)wasm_f32x4_extract_lane(f, 3));
    v128_t conv = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_make(-1.5f, 3e9f, 2.999f, -3e9f));
    print_i32x4("trunc_sat", conv);
    v128_t d = wasm_f64x2_mul(wasm_f64x2_make(1.5, -2.25), wasm_f64x2_make(4.0, 8.0));
    printf("f64x2 = [%.3f, %.3f], any_true=%d all_true=%d\n", wasm_f64x2_extract_lane(d, 0),
           wasm_f64x2_extract_lane(d, 1), wasm_v128_any_true(v), wasm_i32x4_all_true(wasm_i32x4_sub(v, v)));
    return 0;
}
