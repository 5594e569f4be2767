/* Recursion, shallow and deep, without setjmp/longjmp.
 *
 * Classic call-heavy recursion with small frames: Ackermann, naive
 * Fibonacci, Takeuchi, mutual recursion and the Towers of Hanoi.
 *
 * Deep non-tail recursion reaching a few thousand frames: a recursive-
 * descent expression parser fed deeply nested input, a recursive flood fill
 * along a serpentine corridor, and recursive insertion into a degenerate
 * binary search tree.  At the default sizes the whole program needs about
 * 270 KB of native stack under wasmtime at -O0 (its default limit is 512 KiB). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned ackermann(unsigned m, unsigned n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

static uint32_t fib(uint32_t n) {
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static int tak(int x, int y, int z) {
    if (y < x)
        return tak(tak(x - 1, y, z), tak(y - 1, z, x), tak(z - 1, x, y));
    return z;
}

static int is_odd(unsigned n);
static int is_even(unsigned n) { return n == 0 ? 1 : is_odd(n - 1); }
static int is_odd(unsigned n) { return n == 0 ? 0 : is_even(n - 1); }

static unsigned long moves;
static unsigned checksum;

static void hanoi(int n, int from, int to, int via) {
    if (n == 0) return;
    hanoi(n - 1, from, via, to);
    moves++;
    checksum = checksum * 31u + (unsigned)(from * 3 + to);
    hanoi(n - 1, via, to, from);
}

#ifndef NEST
#define NEST 1000
#endif
#ifndef GRID
#define GRID 64
#endif
#ifndef TREE
#define TREE 2000
#endif

/* ---- parser: expr := term (('+'|'-') term)*, term := factor (('*'|'%') factor)*,
 *      factor := digit | '(' expr ')' | '-' factor ---- */
static const char *cur;
static int max_depth, depth;

static long long expr(void);

static long long factor(void) {
    long long v;
    if (++depth > max_depth) max_depth = depth;
    if (*cur == '(') {
        cur++;
        v = expr();
        if (*cur++ != ')') { printf("parse error\n"); exit(1); }
    } else if (*cur == '-') {
        cur++;
        v = -factor();
    } else {
        v = *cur++ - '0';
    }
    depth--;
    return v;
}

static long long term(void) {
    long long v = factor();
    while (*cur == '*' || *cur == '%') {
        char op = *cur++;
        long long r = factor();
        v = op == '*' ? (v * r) % 1000003 : (r ? v % r : v);
    }
    return v;
}

static long long expr(void) {
    long long v = term();
    while (*cur == '+' || *cur == '-') {
        char op = *cur++;
        long long r = term();
        v = op == '+' ? v + r : v - r;
    }
    return v;
}

static char *build_nested(int n) {
    /* "(((...(1+2)*3-4)*5+6)...)" : each level wraps the previous one */
    char *s = malloc((size_t)n * 8 + 16);
    size_t len = 0;
    for (int i = 0; i < n; i++) s[len++] = '(';
    len += (size_t)sprintf(s + len, "1+2");
    for (int i = 0; i < n; i++) {
        s[len++] = ')';
        char op = "*+*-*+*%"[i % 8];
        s[len++] = op;
        s[len++] = op == '%' ? '7' : (char)('1' + i % 9);
    }
    s[len] = 0;
    return s;
}

/* ---- recursive flood fill along a serpentine corridor ---- */
static char grid[GRID][GRID];
static int fill_max_depth;

static int flood(int r, int c, int d) {
    if (r < 0 || c < 0 || r >= GRID || c >= GRID || grid[r][c] != '.') return 0;
    grid[r][c] = 'o';
    if (d > fill_max_depth) fill_max_depth = d;
    int n = 1;
    n += flood(r + 1, c, d + 1);
    n += flood(r - 1, c, d + 1);
    n += flood(r, c + 1, d + 1);
    n += flood(r, c - 1, d + 1);
    return n;
}

/* ---- degenerate BST: sorted insertions make every insert walk the spine ---- */
typedef struct tnode { int key; struct tnode *left, *right; } TNode;

static TNode *insert(TNode *t, int key) {
    if (!t) {
        t = calloc(1, sizeof *t);
        t->key = key;
        return t;
    }
    if (key < t->key) t->left = insert(t->left, key);
    else t->right = insert(t->right, key);
    return t;
}

static int height(const TNode *t) {
    if (!t) return 0;
    int l = height(t->left), r = height(t->right);
    return 1 + (l > r ? l : r);
}

static long long weighted_sum(const TNode *t, int level) {
    if (!t) return 0;
    return weighted_sum(t->left, level + 1) + (long long)t->key * (level % 7 + 1) + weighted_sum(t->right, level + 1);
}

static void free_tree(TNode *t) {
    if (!t) return;
    free_tree(t->left);
    free_tree(t->right);
    free(t);
}

int main(void) {
    for (unsigned m = 0; m <= 3; m++)
        for (unsigned n = 0; n <= 4; n++)
            printf("ackermann(%u, %u) = %u\n", m, n, ackermann(m, n));
    printf("ackermann(2, 200) = %u\n", ackermann(2, 200));
    for (uint32_t n = 0; n <= 27; n += 3)
        printf("fib(%u) = %u\n", n, fib(n));
    printf("tak(18, 12, 6) = %d\n", tak(18, 12, 6));
    printf("tak(24, 16, 8) = %d\n", tak(24, 16, 8));
    printf("is_even(777) = %d, is_odd(1001) = %d\n", is_even(777), is_odd(1001));
    hanoi(16, 1, 3, 2);
    printf("hanoi(16): %lu moves, checksum %u\n", moves, checksum);

    for (int n = 10; n <= NEST; n *= 10) {
        char *src = build_nested(n);
        cur = src;
        max_depth = 0;
        long long v = expr();
        printf("nested(%d): value=%lld max_depth=%d consumed=%s\n", n, v, max_depth, *cur ? "partial" : "all");
        free(src);
    }

    memset(grid, '#', sizeof grid);
    for (int r = 0; r < GRID; r += 2) {
        for (int c = 1; c < GRID - 1; c++) grid[r][c] = '.';
        if (r + 1 < GRID) grid[r + 1][(r / 2) % 2 ? 1 : GRID - 2] = '.';
    }
    int filled = flood(0, 1, 1);
    printf("flood fill: %d cells, max depth %d\n", filled, fill_max_depth);

    TNode *root = NULL;
    for (int i = 0; i < TREE; i++) root = insert(root, i * 3);
    for (int i = TREE - 1; i >= 0; i -= 4) root = insert(root, i * 3 + 1);
    printf("tree: height=%d weighted_sum=%lld\n", height(root), weighted_sum(root, 0));
    free_tree(root);
    return 0;
}
