/* A stack-based bytecode interpreter: the dispatch loop is a dense switch
 * that compilers lower to a jump table (br_table in WebAssembly). */
#include <stdio.h>
#include <stdint.h>
#include <string.h>

enum op {
    OP_HALT, OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_SUB, OP_MUL, OP_DIV,
    OP_MOD, OP_LT, OP_EQ, OP_JMP, OP_JZ, OP_JNZ, OP_DUP, OP_SWAP,
    OP_DROP, OP_PRINT, OP_CALL, OP_RET, OP_INC, OP_DEC, OP_NOT, OP_AND,
    OP_OR, OP_SHL, OP_SHR, OP_NEG, OP_OVER, OP_GT,
};

static const char *const op_names[] = {
    "halt", "push", "load", "store", "add", "sub", "mul", "div",
    "mod", "lt", "eq", "jmp", "jz", "jnz", "dup", "swap",
    "drop", "print", "call", "ret", "inc", "dec", "not", "and",
    "or", "shl", "shr", "neg", "over", "gt",
};

typedef struct {
    int64_t stack[256];
    int sp;
    int calls[64];
    int csp;
    int64_t vars[16];
    uint64_t executed;
    uint64_t histogram[OP_GT + 1];
} VM;

static int run(VM *vm, const int64_t *code, int quiet) {
    int pc = 0;
    for (;;) {
        int64_t op = code[pc++], a, b;
        vm->executed++;
        if ((uint64_t)op <= OP_GT) vm->histogram[op]++;
        switch (op) {
        case OP_HALT: return 0;
        case OP_PUSH: vm->stack[vm->sp++] = code[pc++]; break;
        case OP_LOAD: vm->stack[vm->sp++] = vm->vars[code[pc++]]; break;
        case OP_STORE: vm->vars[code[pc++]] = vm->stack[--vm->sp]; break;
        case OP_ADD: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] += b; break;
        case OP_SUB: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] -= b; break;
        case OP_MUL: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] *= b; break;
        case OP_DIV:
            b = vm->stack[--vm->sp];
            if (b == 0) return -1;
            vm->stack[vm->sp - 1] /= b;
            break;
        case OP_MOD:
            b = vm->stack[--vm->sp];
            if (b == 0) return -1;
            vm->stack[vm->sp - 1] %= b;
            break;
        case OP_LT: b = vm->stack[--vm->sp]; a = vm->stack[vm->sp - 1]; vm->stack[vm->sp - 1] = a < b; break;
        case OP_GT: b = vm->stack[--vm->sp]; a = vm->stack[vm->sp - 1]; vm->stack[vm->sp - 1] = a > b; break;
        case OP_EQ: b = vm->stack[--vm->sp]; a = vm->stack[vm->sp - 1]; vm->stack[vm->sp - 1] = a == b; break;
        case OP_JMP: pc = (int)code[pc]; break;
        case OP_JZ: pc = vm->stack[--vm->sp] == 0 ? (int)code[pc] : pc + 1; break;
        case OP_JNZ: pc = vm->stack[--vm->sp] != 0 ? (int)code[pc] : pc + 1; break;
        case OP_DUP: vm->stack[vm->sp] = vm->stack[vm->sp - 1]; vm->sp++; break;
        case OP_OVER: vm->stack[vm->sp] = vm->stack[vm->sp - 2]; vm->sp++; break;
        case OP_SWAP:
            a = vm->stack[vm->sp - 1];
            vm->stack[vm->sp - 1] = vm->stack[vm->sp - 2];
            vm->stack[vm->sp - 2] = a;
            break;
        case OP_DROP: vm->sp--; break;
        case OP_PRINT:
            a = vm->stack[--vm->sp];
            if (!quiet) printf("  out: %lld\n", (long long)a);
            break;
        case OP_CALL: vm->calls[vm->csp++] = pc + 1; pc = (int)code[pc]; break;
        case OP_RET: pc = vm->calls[--vm->csp]; break;
        case OP_INC: vm->stack[vm->sp - 1]++; break;
        case OP_DEC: vm->stack[vm->sp - 1]--; break;
        case OP_NOT: vm->stack[vm->sp - 1] = !vm->stack[vm->sp - 1]; break;
        case OP_AND: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] &= b; break;
        case OP_OR: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] |= b; break;
        case OP_SHL: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] <<= b; break;
        case OP_SHR: b = vm->stack[--vm->sp]; vm->stack[vm->sp - 1] >>= b; break;
        case OP_NEG: vm->stack[vm->sp - 1] = -vm->stack[vm->sp - 1]; break;
        default:
            printf("bad opcode %lld at %d\n", (long long)op, pc - 1);
            return -2;
        }
    }
}

/* sum of primes below vars[0], by trial division */
static const int64_t primes_prog[] = {
    /* 0 */ OP_PUSH, 0, OP_STORE, 1,            /* sum = 0 */
    /* 4 */ OP_PUSH, 2, OP_STORE, 2,            /* n = 2 */
    /* 8 */ OP_LOAD, 2, OP_LOAD, 0, OP_LT, OP_JZ, 57,  /* while n < limit */
    /* 15 */ OP_PUSH, 2, OP_STORE, 3,           /* d = 2 */
    /* 19 */ OP_LOAD, 3, OP_LOAD, 3, OP_MUL, OP_LOAD, 2, OP_GT, OP_JNZ, 43, /* d*d > n -> prime */
    /* 29 */ OP_LOAD, 2, OP_LOAD, 3, OP_MOD, OP_JZ, 50,  /* n % d == 0 -> composite */
    /* 36 */ OP_LOAD, 3, OP_INC, OP_STORE, 3, OP_JMP, 19,
    /* 43 */ OP_LOAD, 1, OP_LOAD, 2, OP_ADD, OP_STORE, 1,
    /* 50 */ OP_LOAD, 2, OP_INC, OP_STORE, 2, OP_JMP, 8,
    /* 57 */ OP_LOAD, 1, OP_PRINT, OP_HALT,
};

/* recursive factorial through CALL/RET: fact(n) = n <= 1 ? 1 : n * fact(n-1) */
static const int64_t fact_prog[] = {
    /* 0 */ OP_LOAD, 0, OP_CALL, 6, OP_PRINT, OP_HALT,
    /* 6 */ OP_DUP, OP_PUSH, 1, OP_GT, OP_JZ, 18,
    /* 12 */ OP_DUP, OP_DEC, OP_CALL, 6, OP_MUL, OP_RET,
    /* 18 */ OP_DROP, OP_PUSH, 1, OP_RET,
};

/* gcd loop and bit tricks: prints gcd(a, b), then (a << 3 | b >> 2) & 0xffff, then -a */
static const int64_t misc_prog[] = {
    /* 0 */ OP_LOAD, 0, OP_LOAD, 1,
    /* 4 */ OP_DUP, OP_JZ, 14, OP_SWAP, OP_OVER, OP_MOD, OP_JMP, 4, OP_HALT, OP_HALT,
    /* 14 */ OP_DROP, OP_PRINT,
    /* 16 */ OP_LOAD, 0, OP_PUSH, 3, OP_SHL, OP_LOAD, 1, OP_PUSH, 2, OP_SHR, OP_OR,
    /* 27 */ OP_PUSH, 0xffff, OP_AND, OP_PRINT,
    /* 31 */ OP_LOAD, 0, OP_NEG, OP_PRINT,
    /* 35 */ OP_LOAD, 0, OP_LOAD, 1, OP_EQ, OP_NOT, OP_PRINT, OP_HALT,
};

static void report(const char *name, VM *vm, int rc) {
    printf("%s: rc=%d executed=%llu sp=%d\n", name, rc, (unsigned long long)vm->executed, vm->sp);
}

int main(void) {
    static VM vm;
    int64_t limits[] = {10, 100, 1000, 5000};
    for (int i = 0; i < 4; i++) {
        memset(&vm, 0, sizeof vm);
        vm.vars[0] = limits[i];
        printf("sum of primes below %lld\n", (long long)limits[i]);
        report("primes", &vm, run(&vm, primes_prog, 0));
    }
    for (int n = 1; n <= 20; n += 6) {
        memset(&vm, 0, sizeof vm);
        vm.vars[0] = n;
        printf("factorial(%d)\n", n);
        report("fact", &vm, run(&vm, fact_prog, 0));
    }
    memset(&vm, 0, sizeof vm);
    vm.vars[0] = 1071;
    vm.vars[1] = 462;
    printf("misc(1071, 462)\n");
    report("misc", &vm, run(&vm, misc_prog, 0));

    /* a heavier quiet run, then the opcode histogram */
    memset(&vm, 0, sizeof vm);
    vm.vars[0] = 30000;
    int rc = run(&vm, primes_prog, 1);
    printf("quiet primes below 30000: rc=%d sum=%lld executed=%llu\n", rc,
           (long long)vm.vars[1], (unsigned long long)vm.executed);
    for (int op = 0; op <= OP_GT; op++)
        if (vm.histogram[op]) printf("  %-6s %llu\n", op_names[op], (unsigned long long)vm.histogram[op]);
    return 0;
}
