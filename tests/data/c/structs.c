/* Structs passed and returned by value: 3-D vectors, complex numbers and
 * a small ASCII ray tracer plus a Mandelbrot renderer, all in doubles. */
/* Keep a*b+c as two roundings even when the compiler constant-folds it. */
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <stdio.h>

typedef struct { double x, y, z; } Vec3;
typedef struct { double re, im; } Complex;
typedef struct { Vec3 origin, dir; } Ray;
typedef struct { Vec3 center; double radius; char tag; } Sphere;
typedef struct { int hit; double t; Vec3 normal; char tag; } Hit;

static Vec3 v3(double x, double y, double z) { return (Vec3){x, y, z}; }
static Vec3 add(Vec3 a, Vec3 b) { return v3(a.x + b.x, a.y + b.y, a.z + b.z); }
static Vec3 sub(Vec3 a, Vec3 b) { return v3(a.x - b.x, a.y - b.y, a.z - b.z); }
static Vec3 scale(Vec3 a, double s) { return v3(a.x * s, a.y * s, a.z * s); }
static double dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
static Vec3 cross(Vec3 a, Vec3 b) {
    return v3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}
static Vec3 normalize(Vec3 a) { return scale(a, 1.0 / sqrt(dot(a, a))); }

static Complex cmul(Complex a, Complex b) {
    return (Complex){a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
static Complex cadd(Complex a, Complex b) { return (Complex){a.re + b.re, a.im + b.im}; }
static double cabs2(Complex a) { return a.re * a.re + a.im * a.im; }

static Hit intersect(Ray r, Sphere s) {
    Hit h = {0, 0.0, {0, 0, 0}, ' '};
    Vec3 oc = sub(r.origin, s.center);
    double b = dot(oc, r.dir), c = dot(oc, oc) - s.radius * s.radius;
    double disc = b * b - c;
    if (disc < 0) return h;
    double t = -b - sqrt(disc);
    if (t <= 1e-6) return h;
    h.hit = 1;
    h.t = t;
    h.normal = normalize(sub(add(r.origin, scale(r.dir, t)), s.center));
    h.tag = s.tag;
    return h;
}

static Hit trace(Ray r, const Sphere *scene, int n) {
    Hit best = {0, 1e30, {0, 0, 0}, ' '};
    for (int i = 0; i < n; i++) {
        Hit h = intersect(r, scene[i]);
        if (h.hit && h.t < best.t) best = h;
    }
    return best;
}

static void render(void) {
    static const char shades[] = " .:-=+*#%@";
    Sphere scene[] = {
        {{0.0, 0.0, 5.0}, 1.5, 'A'},
        {{-2.2, -0.6, 6.5}, 1.0, 'B'},
        {{2.0, 0.8, 4.5}, 0.7, 'C'},
        {{0.0, -101.5, 5.0}, 100.0, 'G'},
    };
    Vec3 light = normalize(v3(-1.0, 1.5, -1.0));
    int counts[4] = {0, 0, 0, 0};
    double total = 0.0;
    for (int row = 0; row < 22; row++) {
        char line[61];
        for (int col = 0; col < 60; col++) {
            Ray r = {v3(0, 0, 0), normalize(v3((col - 30) / 15.0, (11 - row) / 11.0, 1.5))};
            Hit h = trace(r, scene, 4);
            char ch = ' ';
            if (h.hit) {
                Vec3 p = add(r.origin, scale(r.dir, h.t));
                Ray shadow = {p, light};
                double lum = dot(h.normal, light);
                if (lum < 0 || trace(shadow, scene, 4).hit) lum = 0.05;
                total += lum;
                int idx = (int)(lum * 9.0 + 0.5);
                ch = shades[idx < 0 ? 0 : idx > 9 ? 9 : idx];
                counts[h.tag == 'G' ? 3 : h.tag - 'A']++;
            }
            line[col] = ch;
        }
        line[60] = 0;
        printf("|%s|\n", line);
    }
    printf("hits A=%d B=%d C=%d ground=%d, mean luminance %.6f\n", counts[0], counts[1], counts[2],
           counts[3], total / (counts[0] + counts[1] + counts[2] + counts[3]));
}

static void mandelbrot(void) {
    long iterations = 0;
    for (int row = 0; row < 16; row++) {
        char line[57];
        for (int col = 0; col < 56; col++) {
            Complex c = {-2.2 + col * 3.0 / 56, -1.2 + row * 2.4 / 16};
            Complex z = {0, 0};
            int k = 0;
            while (k < 200 && cabs2(z) <= 4.0) { z = cadd(cmul(z, z), c); k++; }
            iterations += k;
            line[col] = k >= 200 ? '#' : " .,-~:;=!*"[k % 10];
        }
        line[56] = 0;
        printf("%s\n", line);
    }
    printf("mandelbrot iterations: %ld\n", iterations);
}

int main(void) {
    Vec3 a = v3(1, 2, 3), b = v3(-4, 0.5, 2);
    Vec3 c = cross(a, b);
    printf("cross = (%.3f, %.3f, %.3f), dot = %.3f\n", c.x, c.y, c.z, dot(a, b));
    Vec3 n = normalize(add(a, scale(b, 0.25)));
    printf("normalized = (%.6f, %.6f, %.6f)\n", n.x, n.y, n.z);
    Complex z = {0.5, -1.25}, w = cmul(z, z);
    printf("z^2 = %.4f%+.4fi, |z|^2 = %.4f\n", w.re, w.im, cabs2(z));
    render();
    mandelbrot();
    return 0;
}
