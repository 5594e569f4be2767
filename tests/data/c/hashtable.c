/* malloc/free-heavy code: a separately chained hash table with string keys
 * that grows and shrinks, plus a linked list and a dynamic array built and
 * torn down repeatedly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *key;
    long long value;
    struct entry *next;
} Entry;

typedef struct {
    Entry **buckets;
    size_t nbuckets, size, resizes;
} Table;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    while (*s) { h ^= (unsigned char)*s++; h *= 16777619u; }
    return h;
}

static void table_init(Table *t, size_t n) {
    t->buckets = calloc(n, sizeof *t->buckets);
    t->nbuckets = n;
    t->size = 0;
    t->resizes = 0;
}

static void table_rehash(Table *t, size_t n) {
    Entry **nb = calloc(n, sizeof *nb);
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (Entry *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t j = hash_str(e->key) % n;
            e->next = nb[j];
            nb[j] = e;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
    t->resizes++;
}

static void table_put(Table *t, const char *key, long long value) {
    size_t i = hash_str(key) % t->nbuckets;
    for (Entry *e = t->buckets[i]; e; e = e->next)
        if (strcmp(e->key, key) == 0) { e->value = value; return; }
    Entry *e = malloc(sizeof *e);
    size_t len = strlen(key) + 1;
    e->key = malloc(len);
    memcpy(e->key, key, len);
    e->value = value;
    e->next = t->buckets[i];
    t->buckets[i] = e;
    if (++t->size > t->nbuckets * 3 / 4) table_rehash(t, t->nbuckets * 2 + 1);
}

static long long *table_get(Table *t, const char *key) {
    for (Entry *e = t->buckets[hash_str(key) % t->nbuckets]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return &e->value;
    return NULL;
}

static int table_del(Table *t, const char *key) {
    Entry **pp = &t->buckets[hash_str(key) % t->nbuckets];
    for (Entry *e = *pp; e; pp = &e->next, e = e->next) {
        if (strcmp(e->key, key) == 0) {
            *pp = e->next;
            free(e->key);
            free(e);
            if (--t->size < t->nbuckets / 8 && t->nbuckets > 16) table_rehash(t, t->nbuckets / 2 + 1);
            return 1;
        }
    }
    return 0;
}

static void table_free(Table *t) {
    for (size_t i = 0; i < t->nbuckets; i++)
        for (Entry *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->key);
            free(e);
        }
    free(t->buckets);
}

static size_t longest_chain(const Table *t) {
    size_t best = 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        size_t n = 0;
        for (Entry *e = t->buckets[i]; e; e = e->next) n++;
        if (n > best) best = n;
    }
    return best;
}

typedef struct node { int value; struct node *next; } Node;

static long long list_round(int n) {
    Node *head = NULL;
    for (int i = 0; i < n; i++) {
        Node *x = malloc(sizeof *x);
        x->value = i * 7 % 1000;
        x->next = head;
        head = x;
    }
    /* reverse in place, then sum every third element while freeing */
    Node *prev = NULL;
    while (head) { Node *next = head->next; head->next = prev; prev = head; head = next; }
    long long sum = 0;
    for (int i = 0; prev; i++) {
        Node *next = prev->next;
        if (i % 3 == 0) sum += prev->value;
        free(prev);
        prev = next;
    }
    return sum;
}

static long long vector_round(int n) {
    size_t cap = 1, len = 0;
    long long *v = malloc(cap * sizeof *v);
    for (int i = 0; i < n; i++) {
        if (len == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[len++] = (long long)i * i % 65521;
    }
    long long sum = 0;
    for (size_t i = 0; i < len; i += 5) sum += v[i];
    free(v);
    return sum;
}

int main(void) {
    Table t;
    table_init(&t, 16);
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "key-%d-%x", i, (unsigned)(i * 2654435761u));
        table_put(&t, key, (long long)i * 3);
    }
    printf("after insert: size=%zu buckets=%zu resizes=%zu longest=%zu\n", t.size, t.nbuckets,
           t.resizes, longest_chain(&t));
    long long total = 0;
    int missing = 0;
    for (int i = 0; i < 20000; i += 7) {
        snprintf(key, sizeof key, "key-%d-%x", i, (unsigned)(i * 2654435761u));
        long long *v = table_get(&t, key);
        if (v) total += *v; else missing++;
    }
    printf("lookup: total=%lld missing=%d\n", total, missing);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof key, "key-%d-%x", i, (unsigned)(i * 2654435761u));
        table_put(&t, key, -1);
    }
    int deleted = 0;
    for (int i = 0; i < 20000; i++) {
        if (i % 5 == 4) continue;
        snprintf(key, sizeof key, "key-%d-%x", i, (unsigned)(i * 2654435761u));
        deleted += table_del(&t, key);
    }
    deleted += table_del(&t, "no-such-key");
    long long sum = 0;
    for (size_t i = 0; i < t.nbuckets; i++)
        for (Entry *e = t.buckets[i]; e; e = e->next) sum += e->value;
    printf("after delete: deleted=%d size=%zu buckets=%zu resizes=%zu sum=%lld\n", deleted, t.size,
           t.nbuckets, t.resizes, sum);
    table_free(&t);

    long long lists = 0, vecs = 0;
    for (int round = 1; round <= 30; round++) {
        lists += list_round(round * 311);
        vecs += vector_round(round * 997);
    }
    printf("lists=%lld vectors=%lld\n", lists, vecs);

    /* many small blocks of varying size, freed in a scrambled order */
    enum { N = 4096 };
    static unsigned char *blocks[N];
    unsigned seed = 7, check = 0;
    for (int i = 0; i < N; i++) {
        size_t sz = 1 + (seed = seed * 1664525u + 1013904223u) % 300;
        blocks[i] = malloc(sz);
        memset(blocks[i], i & 0xff, sz);
        check += blocks[i][sz - 1] + (unsigned)sz;
    }
    for (int step = 0; step < N; step++) {
        int i = (step * 1237) % N;
        free(blocks[i]);
        blocks[i] = NULL;
    }
    printf("blocks check=%u\n", check);
    return 0;
}
