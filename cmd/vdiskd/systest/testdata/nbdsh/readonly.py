# A snapshot exports read-only: flags 0x058f, its content frozen at the
# snapshot, EPERM for WRITE/TRIM/WRITE_ZEROES, the rest works.
# Argument: {"uri": <snapshot>, "addr": host:port, "export": <snapshot export name>}.

from errno import EINVAL, EPERM

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
BA = nbd.CONTEXT_BASE_ALLOCATION

h = connect(cfg["uri"], contexts=[BA], strict=0)
eq(h.is_read_only(), True, "read-only")
for name, want in (("can_flush", True), ("can_fua", True), ("can_trim", False), ("can_zero", False),
                   ("can_fast_zero", False), ("can_df", True), ("can_multi_conn", True), ("can_cache", True)):
    eq(getattr(h, name)(), want, name)
size = h.get_size()

# The content at snapshot time: 0x5a in [0, 1 MiB), a hole after.
eq(h.pread(1 * MiB, 0), b"\x5a" * MiB, "snapshot content")
eq(h.pread(64 * KiB, 1 * MiB), bytes(64 * KiB), "snapshot hole")
data, chunks = read_chunks(h, 128 * KiB, 1 * MiB - 64 * KiB, nbd.CMD_FLAG_DF)
eq(data, b"\x5a" * (64 * KiB) + bytes(64 * KiB), "DF read on a snapshot")
eq(len(chunks), 1, "DF chunks")
eq(one_chunk(extents(h, 2 * MiB, 0), BA), [(1 * MiB, 0), (1 * MiB, 3)], "snapshot base:allocation")

# Writes of any kind: EPERM, also past the end or with odd flags that are
# otherwise valid; nothing changes.
for fn, args in ((h.pwrite, (b"\x01" * 4096, 0)), (h.pwrite, (b"\x01" * 4096, 0, nbd.CMD_FLAG_FUA)),
                 (h.trim, (4096, 0)), (h.trim, (4096, 0, nbd.CMD_FLAG_FUA)),
                 (h.zero, (4096, 0)), (h.zero, (4096, 0, nbd.CMD_FLAG_NO_HOLE)),
                 (h.pwrite, (b"\x01" * 4096, size - 4096)), (h.zero, (65536, 1 * MiB))):
    expect_errno(EPERM, fn, *args)
# FAST_ZERO is not advertised on a read-only export: EINVAL (or EPERM).
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    raise AssertionError("FAST_ZERO on a read-only export succeeded")
except nbd.Error as e:
    check(e.errnum in (EINVAL, EPERM), "FAST_ZERO on a read-only export: %s", e.errno)
eq(h.pread(1 * MiB, 0), b"\x5a" * MiB, "the snapshot is unchanged")
h.flush()
h.cache(1 * MiB, 0)
expect_errno(EINVAL, h.pread, 1024, size - 512)
h.shutdown()

# The raw flags word.
for sr, want in ((True, TFLAGS_RO_SR), (False, TFLAGS_RO)):
    r = Raw(cfg["addr"])
    if sr:
        r.structured_reply()
    info = r.info(cfg["export"])
    check(info["flags"] == want, "snapshot flags %#x, want %#x (structured %s)", info["flags"], want, sr)
    r.close()
log("readonly: ok")
