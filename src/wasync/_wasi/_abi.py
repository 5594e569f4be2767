"""The numbers and record layouts of ``wasi_snapshot_preview1``, as the WASI
specification (witx, ``typenames.witx``) defines them."""

from __future__ import annotations

import enum
import struct

__all__ = [
    "ALL_RIGHTS",
    "DIRENT",
    "DIR_RIGHTS",
    "EVENT",
    "FDSTAT",
    "FILESTAT",
    "FILE_RIGHTS",
    "IOVEC",
    "PRESTAT",
    "SOCKET_RIGHTS",
    "SUBSCRIPTION_CLOCK",
    "SUBSCRIPTION_HEAD",
    "Advice",
    "Clock",
    "Errno",
    "EventType",
    "Fdflags",
    "Filetype",
    "Fstflags",
    "Lookupflags",
    "Oflags",
    "Rights",
    "Whence",
]


class Errno(enum.IntEnum):
    """WASI error numbers (``$errno``)."""

    SUCCESS = 0
    TOOBIG = 1  # "2big"
    ACCES = 2
    ADDRINUSE = 3
    ADDRNOTAVAIL = 4
    AFNOSUPPORT = 5
    AGAIN = 6
    ALREADY = 7
    BADF = 8
    BADMSG = 9
    BUSY = 10
    CANCELED = 11
    CHILD = 12
    CONNABORTED = 13
    CONNREFUSED = 14
    CONNRESET = 15
    DEADLK = 16
    DESTADDRREQ = 17
    DOM = 18
    DQUOT = 19
    EXIST = 20
    FAULT = 21
    FBIG = 22
    HOSTUNREACH = 23
    IDRM = 24
    ILSEQ = 25
    INPROGRESS = 26
    INTR = 27
    INVAL = 28
    IO = 29
    ISCONN = 30
    ISDIR = 31
    LOOP = 32
    MFILE = 33
    MLINK = 34
    MSGSIZE = 35
    MULTIHOP = 36
    NAMETOOLONG = 37
    NETDOWN = 38
    NETRESET = 39
    NETUNREACH = 40
    NFILE = 41
    NOBUFS = 42
    NODEV = 43
    NOENT = 44
    NOEXEC = 45
    NOLCK = 46
    NOLINK = 47
    NOMEM = 48
    NOMSG = 49
    NOPROTOOPT = 50
    NOSPC = 51
    NOSYS = 52
    NOTCONN = 53
    NOTDIR = 54
    NOTEMPTY = 55
    NOTRECOVERABLE = 56
    NOTSOCK = 57
    NOTSUP = 58
    NOTTY = 59
    NXIO = 60
    OVERFLOW = 61
    OWNERDEAD = 62
    PERM = 63
    PIPE = 64
    PROTO = 65
    PROTONOSUPPORT = 66
    PROTOTYPE = 67
    RANGE = 68
    ROFS = 69
    SPIPE = 70
    SRCH = 71
    STALE = 72
    TIMEDOUT = 73
    TXTBSY = 74
    XDEV = 75
    NOTCAPABLE = 76


class Filetype(enum.IntEnum):
    UNKNOWN = 0
    BLOCK_DEVICE = 1
    CHARACTER_DEVICE = 2
    DIRECTORY = 3
    REGULAR_FILE = 4
    SOCKET_DGRAM = 5
    SOCKET_STREAM = 6
    SYMBOLIC_LINK = 7


class Rights(enum.IntFlag):
    FD_DATASYNC = 1 << 0
    FD_READ = 1 << 1
    FD_SEEK = 1 << 2
    FD_FDSTAT_SET_FLAGS = 1 << 3
    FD_SYNC = 1 << 4
    FD_TELL = 1 << 5
    FD_WRITE = 1 << 6
    FD_ADVISE = 1 << 7
    FD_ALLOCATE = 1 << 8
    PATH_CREATE_DIRECTORY = 1 << 9
    PATH_CREATE_FILE = 1 << 10
    PATH_LINK_SOURCE = 1 << 11
    PATH_LINK_TARGET = 1 << 12
    PATH_OPEN = 1 << 13
    FD_READDIR = 1 << 14
    PATH_READLINK = 1 << 15
    PATH_RENAME_SOURCE = 1 << 16
    PATH_RENAME_TARGET = 1 << 17
    PATH_FILESTAT_GET = 1 << 18
    PATH_FILESTAT_SET_SIZE = 1 << 19
    PATH_FILESTAT_SET_TIMES = 1 << 20
    FD_FILESTAT_GET = 1 << 21
    FD_FILESTAT_SET_SIZE = 1 << 22
    FD_FILESTAT_SET_TIMES = 1 << 23
    PATH_SYMLINK = 1 << 24
    PATH_REMOVE_DIRECTORY = 1 << 25
    PATH_UNLINK_FILE = 1 << 26
    POLL_FD_READWRITE = 1 << 27
    SOCK_SHUTDOWN = 1 << 28
    SOCK_ACCEPT = 1 << 29


ALL_RIGHTS = (1 << 30) - 1
FILE_RIGHTS = (
    Rights.FD_DATASYNC | Rights.FD_READ | Rights.FD_SEEK | Rights.FD_FDSTAT_SET_FLAGS
    | Rights.FD_SYNC | Rights.FD_TELL | Rights.FD_WRITE | Rights.FD_ADVISE
    | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_GET | Rights.FD_FILESTAT_SET_SIZE
    | Rights.FD_FILESTAT_SET_TIMES | Rights.POLL_FD_READWRITE
)  # fmt: skip
DIR_RIGHTS = (
    Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_SYNC | Rights.FD_ADVISE
    | Rights.PATH_CREATE_DIRECTORY | Rights.PATH_CREATE_FILE | Rights.PATH_LINK_SOURCE
    | Rights.PATH_LINK_TARGET | Rights.PATH_OPEN | Rights.FD_READDIR
    | Rights.PATH_READLINK | Rights.PATH_RENAME_SOURCE | Rights.PATH_RENAME_TARGET
    | Rights.PATH_FILESTAT_GET | Rights.PATH_FILESTAT_SET_SIZE
    | Rights.PATH_FILESTAT_SET_TIMES | Rights.FD_FILESTAT_GET
    | Rights.FD_FILESTAT_SET_TIMES | Rights.PATH_SYMLINK | Rights.PATH_REMOVE_DIRECTORY
    | Rights.PATH_UNLINK_FILE
)  # fmt: skip
SOCKET_RIGHTS = (
    Rights.FD_READ | Rights.FD_WRITE | Rights.FD_FDSTAT_SET_FLAGS | Rights.FD_FILESTAT_GET
    | Rights.POLL_FD_READWRITE | Rights.SOCK_SHUTDOWN | Rights.SOCK_ACCEPT
)  # fmt: skip


class Fdflags(enum.IntFlag):
    APPEND = 1
    DSYNC = 2
    NONBLOCK = 4
    RSYNC = 8
    SYNC = 16


class Oflags(enum.IntFlag):
    CREAT = 1
    DIRECTORY = 2
    EXCL = 4
    TRUNC = 8


class Lookupflags(enum.IntFlag):
    SYMLINK_FOLLOW = 1


class Fstflags(enum.IntFlag):
    ATIM = 1
    ATIM_NOW = 2
    MTIM = 4
    MTIM_NOW = 8


class Whence(enum.IntEnum):
    SET = 0
    CUR = 1
    END = 2


class Clock(enum.IntEnum):
    REALTIME = 0
    MONOTONIC = 1
    PROCESS_CPUTIME_ID = 2
    THREAD_CPUTIME_ID = 3


class EventType(enum.IntEnum):
    CLOCK = 0
    FD_READ = 1
    FD_WRITE = 2


class Advice(enum.IntEnum):
    NORMAL = 0
    SEQUENTIAL = 1
    RANDOM = 2
    WILLNEED = 3
    DONTNEED = 4
    NOREUSE = 5


SUBCLOCKFLAGS_ABSTIME = 1
EVENTRWFLAGS_HANGUP = 1
RIFLAGS_RECV_PEEK = 1
RIFLAGS_RECV_WAITALL = 2
ROFLAGS_RECV_DATA_TRUNCATED = 1
SDFLAGS_RD = 1
SDFLAGS_WR = 2
PREOPENTYPE_DIR = 0

# Records (little-endian, with the C layout's padding).
IOVEC = struct.Struct("<II")  # buf, buf_len
FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, flags, rights_base, rights_inheriting
FILESTAT = struct.Struct("<QQBxxxxxxxQQQQQ")  # dev ino filetype nlink size atim mtim ctim
DIRENT = struct.Struct("<QQIBxxx")  # d_next d_ino d_namlen d_type
PRESTAT = struct.Struct("<BxxxI")  # tag, dir name length
SUBSCRIPTION_HEAD = struct.Struct("<QB")  # userdata, tag (at 0 and 8); 48 bytes in all
SUBSCRIPTION_CLOCK = struct.Struct("<IxxxxQQH")  # at 16: id, timeout, precision, flags
SUBSCRIPTION_SIZE = 48
EVENT = struct.Struct("<QHBxxxxxQHxxxxxx")  # userdata error type nbytes flags: 32 bytes

assert FDSTAT.size == 24
assert FILESTAT.size == 64
assert DIRENT.size == 24
assert PRESTAT.size == 8
assert EVENT.size == 32
