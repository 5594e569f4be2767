"""Async WASI preview1 (private; the public names are re-exported by ``wasync``)."""
