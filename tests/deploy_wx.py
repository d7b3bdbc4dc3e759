"""W^X as systemd's MemoryDenyWriteExecute=yes applies it, for tests/test_deploy.py.

Two layers, both applied by :func:`apply` to the calling process (and inherited by children):

* the seccomp filter of systemd 252 (Debian 12): refuse ``mmap`` with PROT_WRITE|PROT_EXEC,
  ``mprotect``/``pkey_mprotect`` adding PROT_EXEC at all, ``shmat`` with SHM_EXEC (EPERM);
* the kernel's own W^X, ``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`` (Linux >= 6.3), which
  newer systemd versions use when the kernel has it.

Kept in its own module so that the child processes of the tests can import it too.
"""

from __future__ import annotations

import ctypes
import platform

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1

# BPF opcodes
LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
RET_K = 0x06  # BPF_RET | BPF_K

# machine -> (AUDIT_ARCH, mmap, mprotect, pkey_mprotect, shmat)
ARCHES = {
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}


class SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter)))


def _program() -> list[tuple[int, int, int, int]]:
    machine = platform.machine()
    if machine not in ARCHES:
        raise OSError(f"no MemoryDenyWriteExecute filter for {machine} in tests/deploy_wx.py")
    arch, mmap_nr, mprotect_nr, pkey_nr, shmat_nr = ARCHES[machine]
    arg2 = 16 + 8 * 2  # offsetof(struct seccomp_data, args[2]), low 32 bits (little endian)
    allow = (RET_K, 0, 0, SECCOMP_RET_ALLOW)
    deny = (RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM)
    return [
        (LD_W_ABS, 0, 0, 4),  # 0: arch
        (JEQ_K, 1, 0, arch),  # 1
        allow,  # 2: another ABI: leave it alone (SystemCallArchitectures=native blocks it)
        (LD_W_ABS, 0, 0, 0),  # 3: syscall number
        (JEQ_K, 4, 0, mmap_nr),  # 4 -> 9
        (JEQ_K, 7, 0, mprotect_nr),  # 5 -> 13
        (JEQ_K, 6, 0, pkey_nr),  # 6 -> 13
        (JEQ_K, 9, 0, shmat_nr),  # 7 -> 17
        allow,  # 8
        (LD_W_ABS, 0, 0, arg2),  # 9: mmap prot
        (AND_K, 0, 0, PROT_WRITE | PROT_EXEC),  # 10
        (JEQ_K, 9, 0, PROT_WRITE | PROT_EXEC),  # 11 -> 21 deny
        allow,  # 12
        (LD_W_ABS, 0, 0, arg2),  # 13: mprotect prot
        (AND_K, 0, 0, PROT_EXEC),  # 14
        (JEQ_K, 5, 0, PROT_EXEC),  # 15 -> 21 deny
        allow,  # 16
        (LD_W_ABS, 0, 0, arg2),  # 17: shmat flags
        (AND_K, 0, 0, SHM_EXEC),  # 18
        (JEQ_K, 1, 0, SHM_EXEC),  # 19 -> 21 deny
        allow,  # 20
        deny,  # 21
    ]


def apply() -> None:
    """Turn on both W^X layers for this process and its future children; raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    prog = _program()
    filters = (SockFilter * len(prog))(*(SockFilter(*ins) for ins in prog))
    fprog = SockFprog(len(prog), filters)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE): needs Linux 6.3 or later")


def enforced() -> bool:
    """True if a W+X mapping is refused here (the restriction is really on)."""
    import mmap

    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        pass
    else:
        return False
    # mprotect(PROT_EXEC) on a plain writable page must fail too (systemd 252's rule).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)  # fmt: skip
    addr = libc.mmap(None, 4096, 0x1 | 0x2, 0x02 | 0x20, -1, 0)  # RW, MAP_PRIVATE|ANONYMOUS
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    refused = libc.mprotect(addr, 4096, 0x1 | 0x4) != 0
    libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(4096))
    return refused
