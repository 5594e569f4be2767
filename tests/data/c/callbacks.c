/* Function pointers and callbacks: qsort/bsearch with comparators, a
 * dispatch table of operations, higher-order map/fold, and a tiny event
 * system storing callbacks together with user data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[12];
    int age;
    double score;
} Person;

static int by_age(const void *a, const void *b) {
    const Person *x = a, *y = b;
    if (x->age != y->age) return x->age < y->age ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_score_desc(const void *a, const void *b) {
    const Person *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const Person *)a)->name, ((const Person *)b)->name);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

typedef int (*binop)(int, int);
static int op_add(int a, int b) { return a + b; }
static int op_sub(int a, int b) { return a - b; }
static int op_mul(int a, int b) { return a * b; }
static int op_max(int a, int b) { return a > b ? a : b; }
static int op_xor(int a, int b) { return a ^ b; }

static const struct { const char *name; binop fn; } ops[] = {
    {"add", op_add}, {"sub", op_sub}, {"mul", op_mul}, {"max", op_max}, {"xor", op_xor},
};

static void map(int *xs, size_t n, int (*f)(int)) {
    for (size_t i = 0; i < n; i++) xs[i] = f(xs[i]);
}
static int fold(const int *xs, size_t n, int init, binop f) {
    for (size_t i = 0; i < n; i++) init = f(init, xs[i]);
    return init;
}
static int square(int x) { return x * x; }
static int collatz_len(int x) {
    int n = 0;
    for (unsigned v = (unsigned)x; v > 1; n++) v = (v & 1) ? 3 * v + 1 : v / 2;
    return n;
}

typedef void (*handler)(void *user, int event);
struct listener { handler fn; void *user; };
static struct listener listeners[8];
static int nlisteners;

static void on(handler fn, void *user) { listeners[nlisteners++] = (struct listener){fn, user}; }
static void emit(int event) {
    for (int i = 0; i < nlisteners; i++) listeners[i].fn(listeners[i].user, event);
}
static void count_events(void *user, int event) { (void)event; ++*(int *)user; }
static void sum_events(void *user, int event) { *(long *)user += event; }
static void print_event(void *user, int event) {
    if (event % 25 == 0) printf("  [%s] event %d\n", (const char *)user, event);
}

static void print_people(const char *title, const Person *p, size_t n) {
    printf("%s:", title);
    for (size_t i = 0; i < n; i++) printf(" %s(%d,%.1f)", p[i].name, p[i].age, p[i].score);
    printf("\n");
}

int main(void) {
    Person people[] = {
        {"ada", 36, 91.5}, {"brian", 41, 78.0}, {"cleo", 29, 91.5}, {"dmitri", 36, 66.25},
        {"eve", 22, 99.0}, {"fatima", 41, 85.5}, {"grace", 29, 70.0}, {"hugo", 50, 88.0},
    };
    size_t np = sizeof people / sizeof people[0];
    qsort(people, np, sizeof people[0], by_age);
    print_people("by age", people, np);
    qsort(people, np, sizeof people[0], by_score_desc);
    print_people("by score", people, np);
    qsort(people, np, sizeof people[0], by_name);
    Person key = {"grace", 0, 0};
    Person *found = bsearch(&key, people, np, sizeof people[0], by_name);
    printf("bsearch grace -> %s age %d\n", found ? found->name : "?", found ? found->age : -1);
    strcpy(key.name, "zed");
    printf("bsearch zed -> %s\n", bsearch(&key, people, np, sizeof people[0], by_name) ? "found" : "missing");

    int xs[200];
    unsigned seed = 12345;
    for (int i = 0; i < 200; i++) {
        seed = seed * 1103515245u + 12345u;
        xs[i] = (int)((seed >> 8) % 1000) - 500;
    }
    qsort(xs, 200, sizeof xs[0], cmp_int);
    printf("sorted ints: min %d, median %d, max %d\n", xs[0], xs[100], xs[199]);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        printf("fold %s = %d\n", ops[i].name, fold(xs, 200, 0, ops[i].fn));

    int ys[30];
    for (int i = 0; i < 30; i++) ys[i] = i + 1;
    map(ys, 30, collatz_len);
    printf("collatz lengths 1..30:");
    for (int i = 0; i < 30; i++) printf(" %d", ys[i]);
    printf("\n");
    map(ys, 30, square);
    printf("sum of squares = %d\n", fold(ys, 30, 0, op_add));

    int count = 0;
    long sum = 0;
    on(count_events, &count);
    on(sum_events, &sum);
    on(print_event, "logger");
    for (int e = 1; e <= 100; e++) emit(e * 3 % 101);
    printf("events: count %d, sum %ld\n", count, sum);
    return 0;
}
