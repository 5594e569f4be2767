"""Whether the kernel can answer a path lookup from its caches, without waiting
for a disk: what lets :class:`~wasync.HostDir` (``offload=True``) make a
read-only path operation on the event loop instead of in a worker thread.

Linux (>= 5.12) has the question built in: ``openat2`` with ``RESOLVE_CACHED``
fails with ``EAGAIN`` when the lookup would need the file system, rather than
wait for it (io_uring uses it for the same purpose: try inline, else punt to a
worker). A lookup that succeeds, or fails with ``ENOENT`` from a cached
negative entry, needed nothing but memory; on a local file system the
``fstatat``/``openat``/``readlinkat`` that follow then find the same entries
in memory. Network and FUSE file systems are not asked (their operations may
wait for a server even when the entries are cached): only the types in
:data:`_LOCAL`, and ``RESOLVE_NO_XDEV`` keeps the lookup on the root's own
file system (a mount below it fails the probe, and the operation goes to a
worker).

Elsewhere (other systems, older kernels, seccomp filters refusing the call)
:func:`probe_for` returns None and every operation goes to a worker as before.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
from typing import Any

__all__ = ["CachedLookup", "probe_for"]

# statfs f_type of the file systems whose lookups and metadata calls wait for
# nothing but a disk (linux/magic.h).
_LOCAL = frozenset(
    {
        0xEF53,  # ext2/3/4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0x01021994,  # tmpfs
        0x858458F6,  # ramfs
        0xF2F52010,  # f2fs
        0x794C7630,  # overlayfs
        0xCA451A4E,  # bcachefs
        0x2FC12FC1,  # zfs
    }
)
_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_RESOLVE_CACHED = 0x20
_O_PATH = getattr(os, "O_PATH", 0)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


class CachedLookup:
    """``probe(dir_fd, path)``: whether looking `path` up below `dir_fd` (a
    clean relative path, "." for the directory itself) needs only the kernel's
    caches right now."""

    def __init__(self, syscall: Any) -> None:
        self._syscall = syscall
        self._how = _OpenHow(
            os.O_CLOEXEC | os.O_NOFOLLOW | _O_PATH,
            0,
            _RESOLVE_CACHED | _RESOLVE_NO_XDEV | _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS,
        )
        self._how_ref = ctypes.byref(self._how)
        self._size = ctypes.sizeof(self._how)

    def probe(self, dir_fd: int, path: str) -> bool:
        fd = self._syscall(_SYS_OPENAT2, dir_fd, os.fsencode(path), self._how_ref, self._size)
        if fd >= 0:
            os.close(fd)
            return True
        return ctypes.get_errno() == errno.ENOENT  # a cached negative entry


@functools.cache
def _libc() -> tuple[Any, Any] | None:
    """(syscall, fstatfs) from the C library, prototypes set; None if missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
        fstatfs = libc.fstatfs
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = (
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
    )
    fstatfs.restype = ctypes.c_int
    fstatfs.argtypes = (ctypes.c_int, ctypes.c_void_p)
    return syscall, fstatfs


def probe_for(root_fd: int) -> CachedLookup | None:
    """A CachedLookup for a directory on a local file system, or None where
    the kernel cannot tell (not Linux, no openat2 or RESOLVE_CACHED, another
    kind of file system)."""
    if not sys.platform.startswith("linux") or not _O_PATH:
        return None
    functions = _libc()
    if functions is None:
        return None
    syscall, fstatfs = functions
    buf = ctypes.create_string_buffer(512)  # struct statfs: f_type comes first
    if fstatfs(root_fd, buf) != 0:
        return None
    f_type = ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF
    if f_type not in _LOCAL:
        return None
    lookup = CachedLookup(syscall)
    # The call itself must work here: ENOSYS (old kernel), EINVAL (no
    # RESOLVE_CACHED), EPERM (a seccomp filter) say it does not.
    fd = syscall(_SYS_OPENAT2, root_fd, b".", lookup._how_ref, lookup._size)
    if fd >= 0:
        os.close(fd)
    elif ctypes.get_errno() != errno.EAGAIN:
        return None
    return lookup
