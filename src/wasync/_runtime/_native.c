/*
 * The fiber strategy's async host function callback, in C (optional: without a
 * C compiler wasync installs without it and uses a Python callback instead).
 *
 * When wasm calls an `async def` import, wasmtime runs the import's
 * wasmtime_func_async_callback_t on the wasm fiber. All it has to do is record
 * the call and hand wasmtime a continuation; the driver (Python, on the event
 * loop) then sees the call future's poll return "pending", awaits the import's
 * coroutine, writes the results and polls again. Done in Python, that callback
 * is the costliest part of a suspension: taking the GIL on the fiber, converting
 * eight C arguments, running a Python frame. Here it is a few stores, with no
 * GIL and no Python.
 *
 * The call is recorded in the store's mailbox (one per fiber instance, owned by
 * Python; see _fiber.py), whose layout is below. wasmtime runs the fiber on the
 * thread that polls the call future, and only one call future per store runs
 * at a time, so the mailbox needs no synchronisation: the driver reads it after
 * the poll returned, on that thread.
 *
 * No wasmtime header is needed: the callback only stores pointers it is given,
 * and the continuation it hands over is a 3-word template the driver prepared
 * ({callback, env, finalizer}: wasmtime_async_continuation_t).
 */
#define Py_LIMITED_API 0x030B0000
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *callback; /* bool (*)(void *env): true once the results are written */
    void *env;
    void *finalizer; /* void (*)(void *) or NULL */
} continuation_t;

/* Written by on_call, read (and `pending` cleared) by the driver. */
typedef struct {
    uint64_t pending;      /* the import's slot (1-based) of the recorded call; 0: none */
    const void *args;      /* const wasmtime_val_t *: the call's arguments */
    void *results;         /* wasmtime_val_t *: where the results go */
    void *trap_ret;        /* wasm_trap_t **: where a trap goes */
    continuation_t cont;   /* the continuation to hand out (set by the driver) */
    uint8_t done;          /* set by the driver once the results are written */
    uint8_t nul;           /* always 0: `cont` may be {strlen, &done, NULL} */
} mailbox_t;

/* One per import definition: the `env` wasmtime passes back to on_call. */
typedef struct {
    mailbox_t *mailbox;
    uint64_t slot;
} import_env_t;

/* wasmtime_func_async_callback_t */
static void
on_call(void *env, void *caller, const void *args, size_t nargs, void *results,
        size_t nresults, void *trap_ret, continuation_t *continuation_ret)
{
    const import_env_t *e = (const import_env_t *)env;
    mailbox_t *m = e->mailbox;
    (void)caller;
    (void)nargs;
    (void)nresults;
    m->args = args;
    m->results = results;
    m->trap_ret = trap_ret;
    m->done = 0;
    *continuation_ret = m->cont;
    m->pending = e->slot;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "wasync._runtime._native",
    "The fiber strategy's async host function callback (see _native.c).",
    -1,   /* no per-module state */
    NULL, /* no methods: just the constants below */
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    /* The address of on_call, and the layout Python must agree with. */
    PyObject *address = PyLong_FromVoidPtr((void *)on_call);
    if (address == NULL || PyModule_AddObjectRef(m, "on_call", address) < 0
        || PyModule_AddIntConstant(m, "MAILBOX_SIZE", (long)sizeof(mailbox_t)) < 0
        || PyModule_AddIntConstant(m, "MAILBOX_CONT", (long)offsetof(mailbox_t, cont)) < 0
        || PyModule_AddIntConstant(m, "MAILBOX_DONE", (long)offsetof(mailbox_t, done)) < 0
        || PyModule_AddIntConstant(m, "IMPORT_ENV_SIZE", (long)sizeof(import_env_t)) < 0) {
        Py_XDECREF(address);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(address);
    return m;
}
