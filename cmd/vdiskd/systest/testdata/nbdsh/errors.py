# Every error value a writable export gives, through libnbd with strict mode
# off (so libnbd sends what it would otherwise refuse).
# Argument: {"uri": <writable 64 MiB VDI>}.

from errno import EINVAL, ENOSPC, EOVERFLOW, ENOTSUP

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
BA = nbd.CONTEXT_BASE_ALLOCATION
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = (nbd.CMD_FLAG_FUA, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_DF,
                                        nbd.CMD_FLAG_REQ_ONE, nbd.CMD_FLAG_FAST_ZERO)


def bs(h, n, off, flags=0):
    return h.block_status(n, off, lambda *a: 0, flags)


h = connect(cfg["uri"], contexts=[BA], strict=0)
eq(h.get_strict_mode(), 0, "strict mode")
size = h.get_size()
h.pwrite(b"\x77" * (64 * KiB), 0)


def alive(what):
    """After an error the connection still works."""
    eq(h.pread(512, 0), b"\x77" * 512, "read after " + what)


# --- past the end: EINVAL for READ/TRIM/CACHE/BLOCK_STATUS, ENOSPC for writes ---
for off, n in ((size - 512, 1024), (size, 512), (size + 64 * KiB, 4096), (2 ** 64 - 512, 1024)):
    expect_errno(EINVAL, h.pread, n, off)
    expect_errno(EINVAL, h.trim, n, off)
    expect_errno(EINVAL, h.cache, n, off)
    expect_errno(EINVAL, bs, h, n, off)
    expect_errno(ENOSPC, h.pwrite, b"\x01" * n, off)
    expect_errno(ENOSPC, h.pwrite, b"\x01" * n, off, FUA)
    expect_errno(ENOSPC, h.zero, n, off)
    expect_errno(ENOSPC, h.zero, n, off, NO_HOLE)
    alive("past-the-end requests at %d" % off)
eq(h.pread(512, size - 512), bytes(512), "the last sector still reads")
eq(h.pread(512, 0), b"\x77" * 512, "a failed write past the end wrote nothing")

# --- misaligned: libnbd asked for INFO_BLOCK_SIZE, so 512 is binding ---
for off, n in ((1, 512), (512, 100), (100, 100), (4096 + 256, 4096)):
    expect_errno(EINVAL, h.pread, n, off)
    expect_errno(EINVAL, h.pwrite, b"\x02" * n, off)
    expect_errno(EINVAL, h.trim, n, off)
    expect_errno(EINVAL, h.zero, n, off)
    expect_errno(EINVAL, h.cache, n, off)
    expect_errno(EINVAL, bs, h, n, off)
    alive("misaligned requests")
eq(h.pread(64 * KiB, 0), b"\x77" * (64 * KiB), "misaligned writes changed nothing")

# --- flags that are unknown or do not apply to the command: EINVAL ---
for flags in (REQ_ONE, NO_HOLE, FAST_ZERO, 0x20, 0x40, 0x80, 0x100):
    expect_errno(EINVAL, h.pread, 512, 0, flags)
for flags in (DF, REQ_ONE, NO_HOLE, FAST_ZERO, 0x20):
    expect_errno(EINVAL, h.pwrite, b"\x03" * 512, 0, flags)
for flags in (DF, NO_HOLE, REQ_ONE, FAST_ZERO, 0x20):
    expect_errno(EINVAL, h.trim, 4096, 0, flags)
    expect_errno(EINVAL, h.cache, 4096, 0, flags)
for flags in (DF, REQ_ONE, 0x20):
    expect_errno(EINVAL, h.zero, 4096, 0, flags)
for flags in (DF, NO_HOLE, FAST_ZERO, 0x20):
    expect_errno(EINVAL, bs, h, 4096, 0, flags)
for flags in (DF, NO_HOLE, REQ_ONE, FAST_ZERO, 0x20):
    expect_errno(EINVAL, h.flush, flags)
alive("bad flags")
eq(h.pread(64 * KiB, 0), b"\x77" * (64 * KiB), "requests with bad flags changed nothing")

# --- READ longer than the 32 MiB maximum payload: EOVERFLOW ---
expect_errno(EOVERFLOW, h.pread, 32 * MiB + 512, 0)
expect_errno(EOVERFLOW, h.pread, 32 * MiB + 512, 0, DF)
expect_errno(EOVERFLOW, h.pread, 64 * MiB, 0)
eq(len(h.pread(32 * MiB, 0)), 32 * MiB, "a 32 MiB read")
alive("EOVERFLOW")

# --- FAST_ZERO that is not a whole number of 4 KiB blocks: ENOTSUP, nothing changes ---
h.pwrite(b"\x44" * (64 * KiB), 1 * MiB)
expect_errno(ENOTSUP, h.zero, 4096, 1 * MiB + 512, FAST_ZERO)
expect_errno(ENOTSUP, h.zero, 4096 + 512, 1 * MiB, FAST_ZERO)
expect_errno(ENOTSUP, h.zero, 512, 1 * MiB + 4096, FAST_ZERO | NO_HOLE)
eq(h.pread(64 * KiB, 1 * MiB), b"\x44" * (64 * KiB), "a refused FAST_ZERO changed nothing")
h.zero(8192, 1 * MiB + 4096, FAST_ZERO)
eq(h.pread(16 * KiB, 1 * MiB), b"\x44" * 4096 + bytes(8192) + b"\x44" * 4096, "an aligned FAST_ZERO")
alive("ENOTSUP")

# --- BLOCK_STATUS without a selected meta context: EINVAL ---
h2 = connect(cfg["uri"], strict=0)
eq(h2.can_meta_context(BA), False, "no context selected")
expect_errno(EINVAL, bs, h2, 4096, 0)
expect_errno(EINVAL, bs, h2, 4096, 0, REQ_ONE)
eq(h2.pread(512, 0), b"\x77" * 512, "read after BLOCK_STATUS without a context")
h2.shutdown()

# --- a client that did not ask for block sizes may send any alignment ---
h3 = connect(cfg["uri"], block_size=False, strict=0)
h3.pwrite(b"\x99" * 100, 2 * MiB + 1)
eq(h3.pread(102, 2 * MiB), b"\x00" + b"\x99" * 100 + b"\x00", "unaligned write and read without INFO_BLOCK_SIZE")
h3.trim(100, 2 * MiB + 1)
h3.zero(100, 2 * MiB + 1)
eq(h3.pread(102, 2 * MiB), bytes(102), "unaligned zero")
expect_errno(ENOSPC, h3.pwrite, b"\x01" * 100, size - 50)
expect_errno(EINVAL, h3.pread, 100, size - 50)
h3.shutdown()

# --- without structured replies: errors come as simple replies ---
h4 = connect(cfg["uri"], structured=False, strict=0)
eq(h4.get_structured_replies_negotiated(), False, "structured replies")
eq(h4.can_df(), False, "DF needs structured replies")
eq(h4.can_meta_context(BA), False, "no contexts without structured replies")
expect_errno(EINVAL, h4.pread, 1024, size - 512)
expect_errno(ENOSPC, h4.pwrite, b"\x01" * 1024, size - 512)
expect_errno(EINVAL, h4.pread, 512, 0, DF)  # DF not negotiated
expect_errno(EINVAL, h4.pread, 32 * MiB + 512, 0)
expect_errno(EINVAL, bs, h4, 4096, 0)
eq(h4.pread(512, 0), b"\x77" * 512, "simple-reply read")
h4.shutdown()

h.shutdown()
log("errors: ok")
