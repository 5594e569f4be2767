/* CPU-bound SQLite workload for benchmarks/bench_asyncify_speed.py.
 *
 * Everything happens in an in-memory database (":memory:"), so the only WASI calls are the
 * few made by libc and SQLite's start-up (clock, random seed attempts) and the final printf:
 * when a transformed module runs this, nothing ever suspends and the measured time is the
 * cost of the instrumentation's normal-state checks alone.
 *
 * The work is deterministic (a fixed integer hash, no wall-clock or random input reaches
 * the results) and ends with one line of checksums, which the benchmark compares across all
 * variants and which keeps the optimizer from dropping any of the work:
 *
 *   1. CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL)
 *   2. INSERT 100,000 rows in one transaction through one prepared statement; name and score
 *      are computed from a hash of the row number
 *   3. CREATE INDEX on name, and one on score
 *   4. 5,000 point lookups by name (index) and 1,000 short range scans by score (index)
 *   5. one GROUP BY aggregate over the whole table
 *
 * Built together with the amalgamation (sqlite3.c); the benchmark passes -I to its directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sqlite3.h"

#define ROWS 100000
#define LOOKUPS 5000
#define RANGES 1000

static uint32_t mix(uint32_t x) {
    /* a 32-bit integer hash (lowbias32) */
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static void row_name(uint32_t i, char *buf, size_t size) {
    uint32_t h = mix(i * 2U + 1U);
    snprintf(buf, size, "k%08x-%u", h, i % 97U);
}

static double row_score(uint32_t i) { return (double)(mix(i ^ 0x9e3779b9U) % 1000000U) / 1000.0; }

static void check(sqlite3 *db, int rc, int expected, const char *what) {
    if (rc != expected) {
        fprintf(stderr, "%s: %s (rc=%d)\n", what, sqlite3_errmsg(db), rc);
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, err ? err : "?");
        exit(1);
    }
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *stmt = NULL;
    check(db, sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, sql);
    return stmt;
}

int main(void) {
    sqlite3 *db = NULL;
    char name[32];
    uint64_t sum_id = 0, hash = 1469598103934665603ULL; /* FNV-1a over what we read back */
    double sum_score = 0.0;
    long found = 0, in_ranges = 0;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        fprintf(stderr, "cannot open :memory:\n");
        return 1;
    }
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL)");

    /* 2. bulk insert */
    exec(db, "BEGIN");
    sqlite3_stmt *ins = prepare(db, "INSERT INTO t(id, name, score) VALUES (?1, ?2, ?3)");
    for (uint32_t i = 0; i < ROWS; i++) {
        row_name(i, name, sizeof name);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(ins, 3, row_score(i));
        check(db, sqlite3_step(ins), SQLITE_DONE, "insert");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec(db, "COMMIT");

    /* 3. indexes */
    exec(db, "CREATE INDEX t_name ON t(name)");
    exec(db, "CREATE INDEX t_score ON t(score)");

    /* 4a. point lookups by name */
    sqlite3_stmt *by_name = prepare(db, "SELECT id, score FROM t WHERE name = ?1");
    for (uint32_t j = 0; j < LOOKUPS; j++) {
        uint32_t i = mix(j + 12345U) % (ROWS + ROWS / 10); /* ~9% misses */
        row_name(i, name, sizeof name);
        sqlite3_bind_text(by_name, 1, name, -1, SQLITE_STATIC);
        while (sqlite3_step(by_name) == SQLITE_ROW) {
            sqlite3_int64 id = sqlite3_column_int64(by_name, 0);
            sum_id += (uint64_t)id;
            sum_score += sqlite3_column_double(by_name, 1);
            hash = (hash ^ (uint64_t)id) * 1099511628211ULL;
            found++;
        }
        sqlite3_reset(by_name);
    }
    sqlite3_finalize(by_name);

    /* 4b. short range scans by score */
    sqlite3_stmt *by_score =
        prepare(db, "SELECT id FROM t WHERE score >= ?1 AND score < ?2 ORDER BY score, id");
    for (uint32_t j = 0; j < RANGES; j++) {
        double lo = (double)(mix(j + 777U) % 1000000U) / 1000.0;
        sqlite3_bind_double(by_score, 1, lo);
        sqlite3_bind_double(by_score, 2, lo + 0.05);
        while (sqlite3_step(by_score) == SQLITE_ROW) {
            hash = (hash ^ (uint64_t)sqlite3_column_int64(by_score, 0)) * 1099511628211ULL;
            in_ranges++;
        }
        sqlite3_reset(by_score);
    }
    sqlite3_finalize(by_score);

    /* 5. one aggregate over the whole table */
    sqlite3_stmt *agg = prepare(db,
                                "SELECT substr(name, 2, 1) AS k, count(*), sum(score), "
                                "max(length(name)) FROM t GROUP BY k ORDER BY k");
    long groups = 0;
    double agg_score = 0.0;
    while (sqlite3_step(agg) == SQLITE_ROW) {
        groups++;
        hash = (hash ^ (uint64_t)sqlite3_column_int64(agg, 1)) * 1099511628211ULL;
        hash = (hash ^ (uint64_t)sqlite3_column_int64(agg, 3)) * 1099511628211ULL;
        agg_score += sqlite3_column_double(agg, 2);
    }
    sqlite3_finalize(agg);
    sqlite3_close(db);

    printf("sqlite %s rows=%d found=%ld sum_id=%llu sum_score=%.3f ranges=%ld groups=%ld "
           "agg_score=%.3f hash=%016llx\n",
           sqlite3_libversion(), ROWS, found, (unsigned long long)sum_id, sum_score, in_ranges,
           groups, agg_score, (unsigned long long)hash);
    return 0;
}
