#!/usr/bin/env python3
"""Runs a command under the seccomp rules of systemd's MemoryDenyWriteExecute=yes.

    cross/mdwe-run.py COMMAND [ARGS...]

The same three rules as systemd 252 (src/shared/seccomp-util.c,
seccomp_memory_deny_write_execute), through libseccomp (a systemd dependency, present on
every Debian machine): mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding
PROT_EXEC, and shmat with SHM_EXEC fail with EPERM. A runtime that JIT-compiles code
(XNNPACK's old JIT, for example) fails under it; facegate with LiteRT 2.1.4 must not.
systemd itself cannot run in these containers, so this is how CI checks the unit's
MemoryDenyWriteExecute=yes.
"""
import ctypes
import ctypes.util
import os
import sys

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | 1
SCMP_CMP_MASKED_EQ = 7


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        sys.exit("mdwe-run: seccomp_init failed")
    rules = [("mmap", 2, PROT_WRITE | PROT_EXEC), ("mmap2", 2, PROT_WRITE | PROT_EXEC),
             ("mprotect", 2, PROT_EXEC), ("pkey_mprotect", 2, PROT_EXEC),
             ("shmat", 2, SHM_EXEC)]
    added = 0
    for syscall, arg, mask in rules:
        nr = lib.seccomp_syscall_resolve_name(syscall.encode())
        if nr < 0:
            continue  # not a syscall on this architecture (mmap2 on 64-bit)
        cmp = ArgCmp(arg, SCMP_CMP_MASKED_EQ, mask, mask)
        rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO_EPERM, nr, 1, ctypes.byref(cmp))
        if rc != 0:
            sys.exit(f"mdwe-run: seccomp_rule_add({syscall}) failed: {rc}")
        added += 1
    if lib.seccomp_load(ctx) != 0:
        sys.exit("mdwe-run: seccomp_load failed")
    print(f"mdwe-run: {added} MemoryDenyWriteExecute rules loaded", file=sys.stderr)
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
