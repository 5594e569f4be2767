/* String processing: tokenising, word statistics, run-length encoding,
 * a Caesar/ROT cipher, in-place reversal, palindromes, number formatting
 * with snprintf and a naive substring search. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char text[] =
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
    "incredulity, it was the season of Light, it was the season of Darkness, it was "
    "the spring of hope, it was the winter of despair.";

struct word { char text[16]; int count; };

static int word_cmp(const void *a, const void *b) {
    const struct word *x = a, *y = b;
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->text, y->text);
}

static void word_stats(void) {
    struct word words[64];
    int nwords = 0, total = 0;
    char buf[sizeof text];
    memcpy(buf, text, sizeof text);
    for (char *tok = strtok(buf, " ,."); tok; tok = strtok(NULL, " ,.")) {
        for (char *p = tok; *p; p++) *p = (char)tolower((unsigned char)*p);
        total++;
        int i;
        for (i = 0; i < nwords; i++)
            if (strcmp(words[i].text, tok) == 0) break;
        if (i == nwords) {
            snprintf(words[nwords].text, sizeof words[0].text, "%s", tok);
            words[nwords++].count = 0;
        }
        words[i].count++;
    }
    qsort(words, (size_t)nwords, sizeof words[0], word_cmp);
    printf("%d words, %d distinct; top:", total, nwords);
    for (int i = 0; i < 6; i++) printf(" %s=%d", words[i].text, words[i].count);
    printf("\n");
}

static size_t rle_encode(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; in[i];) {
        size_t j = i;
        while (in[j] == in[i]) j++;
        int n = snprintf(out + o, cap - o, "%zu%c", j - i, in[i]);
        if (n < 0 || (size_t)n >= cap - o) return 0;
        o += (size_t)n;
        i = j;
    }
    return o;
}

static void rle_decode(const char *in, char *out) {
    while (*in) {
        char *end;
        unsigned long n = strtoul(in, &end, 10);
        memset(out, end[0], n);
        out += n;
        in = end + 1;
    }
    *out = 0;
}

static void rot(char *s, int k) {
    for (; *s; s++) {
        if (isupper((unsigned char)*s)) *s = (char)('A' + (*s - 'A' + k) % 26);
        else if (islower((unsigned char)*s)) *s = (char)('a' + (*s - 'a' + k) % 26);
    }
}

static void reverse(char *s, size_t n) {
    for (size_t i = 0; i < n / 2; i++) { char t = s[i]; s[i] = s[n - 1 - i]; s[n - 1 - i] = t; }
}

static void reverse_words(char *s) {
    size_t n = strlen(s);
    reverse(s, n);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != ' ') j++;
        reverse(s + i, j - i);
        i = j + 1;
    }
}

static int is_palindrome(const char *s) {
    const char *e = s + strlen(s);
    while (s < e) {
        if (!isalnum((unsigned char)*s)) { s++; continue; }
        if (!isalnum((unsigned char)e[-1])) { e--; continue; }
        if (tolower((unsigned char)*s++) != tolower((unsigned char)*--e)) return 0;
    }
    return 1;
}

static int count_occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static void with_commas(long long v, char *out) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", v < 0 ? -v : v), o = 0;
    if (v < 0) out[o++] = '-';
    for (int i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = 0;
}

int main(void) {
    word_stats();
    printf("occurrences: 'it was'=%d 'of'=%d 'times'=%d\n", count_occurrences(text, "it was"),
           count_occurrences(text, "of"), count_occurrences(text, "times"));

    const char *raw = "WWWWWWWWWWWWBWWWWWWWWWWWWBBBWWWWWWWWWWWWWWWWWWWWWWWWBWWWWWWWWWWWWWW";
    char enc[128], dec[128];
    size_t elen = rle_encode(raw, enc, sizeof enc);
    rle_decode(enc, dec);
    printf("rle: %s (%zu -> %zu bytes), roundtrip %s\n", enc, strlen(raw), elen,
           strcmp(raw, dec) == 0 ? "ok" : "FAILED");

    char msg[] = "The Quick Brown Fox Jumps Over The Lazy Dog";
    rot(msg, 13);
    printf("rot13: %s\n", msg);
    rot(msg, 13);
    reverse_words(msg);
    printf("reversed words: %s\n", msg);

    const char *candidates[] = {"A man, a plan, a canal: Panama", "Was it a car or a cat I saw?",
                                "WebAssembly", "No 'x' in Nixon", ""};
    for (int i = 0; i < 5; i++) printf("palindrome(\"%s\") = %d\n", candidates[i], is_palindrome(candidates[i]));

    long long values[] = {0, 999, 1000, -1234567, 9223372036854775807ll};
    for (int i = 0; i < 5; i++) {
        char out[40];
        with_commas(values[i], out);
        printf("%lld -> %s\n", values[i], out);
    }
    char line[80];
    int n = snprintf(line, sizeof line, "[%-8s|%8s|%08.3f|%x|%o|%c]", "left", "right", 3.14159, 48879, 8, 'Z');
    printf("%s (%d chars)\n", line, n);
    unsigned hash = 5381;
    for (const char *p = text; *p; p++) hash = hash * 33u ^ (unsigned char)toupper((unsigned char)*p);
    printf("djb2(upper(text)) = %08x\n", hash);
    return 0;
}
