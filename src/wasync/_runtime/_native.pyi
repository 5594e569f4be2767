# The optional C extension built from _native.c (see there).
on_call: int  # address of the wasmtime_func_async_callback_t
MAILBOX_SIZE: int
MAILBOX_CONT: int
MAILBOX_DONE: int
IMPORT_ENV_SIZE: int
