# Every NBD command against a fresh, writable 64 MiB VDI, through libnbd.
# Argument: {"uri": ..., "name": <name_label>}.

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
BA = nbd.CONTEXT_BASE_ALLOCATION

h = connect(cfg["uri"], contexts=[BA], full_info=True)
size = h.get_size()
eq(size, 64 * MiB, "size")

# --- what the server advertised: 0x0ded with structured replies ---
eq(h.get_protocol(), "newstyle-fixed", "protocol")
eq(h.get_structured_replies_negotiated(), True, "structured replies")
eq(h.is_read_only(), False, "read-only")
for name in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df", "can_multi_conn", "can_cache"):
    eq(getattr(h, name)(), True, name)
eq(h.is_rotational(), False, "rotational")
eq([h.get_block_size(t) for t in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)],
   [512, 64 * KiB, 32 * MiB], "block sizes")
eq(h.get_export_description(), cfg["name"], "description (INFO_DESCRIPTION)")
eq(h.can_meta_context(BA), True, "base:allocation negotiated")

# --- READ of a never-written VDI: zeros, sent as one hole ---
data, chunks = read_chunks(h, 1 * MiB, 0)
eq(data, bytes(1 * MiB), "never-written data")
eq(chunks, [(0, 1 * MiB, nbd.READ_HOLE)], "chunks of a never-written read")
eq(h.pread(4 * KiB, size - 4 * KiB), bytes(4 * KiB), "last block")
eq(one_chunk(extents(h, size, 0), BA), [(size, 3)], "base:allocation of an empty VDI")

# --- WRITE, with and without FUA ---
A = 1 * MiB
pat = bytes((i * 7 + 1) & 0xff for i in range(64 * KiB))
h.pwrite(pat, A)
h.pwrite(b"\xaa" * 4096, A + 64 * KiB, nbd.CMD_FLAG_FUA)
eq(h.pread(64 * KiB, A), pat, "plain write")
eq(h.pread(4096, A + 64 * KiB), b"\xaa" * 4096, "FUA write")
# A 512-byte write inside a 4 KiB block (read-modify-write in the store).
h.pwrite(b"\x55" * 512, A + 68 * KiB + 512)
eq(h.pread(4096, A + 68 * KiB), bytes(512) + b"\x55" * 512 + bytes(3072), "sub-block write")
# A maximum-size (32 MiB) write and read.
big = bytes((i >> 9) & 0xff for i in range(32 * MiB))
h.pwrite(big, 32 * MiB)
eq(h.pread(32 * MiB, 32 * MiB) == big, True, "32 MiB write read back")
h.zero(32 * MiB, 32 * MiB)  # back to a hole for the block-status checks below

# --- FLUSH ---
h.flush()

# --- READ with DF over a range mixing data and hole ---
B = 4 * MiB
h.pwrite(b"\x11" * 4096, B + 8192)
want = bytes(8192) + b"\x11" * 4096 + bytes(64 * KiB - 12288)
data, chunks = read_chunks(h, 64 * KiB, B, nbd.CMD_FLAG_DF)
eq(data, want, "DF read of data and hole")
eq(chunks, [(B, 64 * KiB, nbd.READ_DATA)], "DF read chunks (exactly one data chunk)")
data, chunks = read_chunks(h, 64 * KiB, B)
eq(data, want, "read of data and hole")
at = B
for off, n, st in chunks:  # contiguous, non-overlapping, covering the request
    eq(off, at, "chunk offset")
    at += n
eq(at, B + 64 * KiB, "chunks cover the request")
eq(sorted(set(st for _, _, st in chunks)), [nbd.READ_DATA, nbd.READ_HOLE], "a mixed read sends data and hole chunks")
for off, n, st in chunks:
    if st == nbd.READ_DATA:
        check(off <= B + 8192 and off + n >= B + 12288, "data chunk %d+%d misses the data", off, n)
# DF over a 1 MiB mixed range and over a pure hole: still one chunk.
data, chunks = read_chunks(h, 1 * MiB, B - 512 * KiB, nbd.CMD_FLAG_DF)
eq(len(chunks), 1, "chunks of a 1 MiB DF read")
eq(data[512 * KiB:512 * KiB + 64 * KiB], want, "1 MiB DF read content")
data, chunks = read_chunks(h, 64 * KiB, 20 * MiB, nbd.CMD_FLAG_DF)
eq((data, len(chunks)), (bytes(64 * KiB), 1), "DF read of a hole")
# FUA is valid (and ignored) on READ (libnbd only sends it when not strict).
strict = h.get_strict_mode()
h.set_strict_mode(0)
eq(h.pread(4096, B + 8192, nbd.CMD_FLAG_FUA), b"\x11" * 4096, "READ with FUA")
h.set_strict_mode(strict)

# --- TRIM: rounded inward to 4 KiB; whole trimmed blocks become holes ---
C = 8 * MiB
h.pwrite(b"\x22" * (192 * KiB), C)
h.trim(128 * KiB, C + 1024)  # whole blocks: [C+4K, C+128K)
data = h.pread(192 * KiB, C)
eq(data[:4096], b"\x22" * 4096, "partial first block of a trim is kept")
eq(data[4096:128 * KiB], bytes(124 * KiB), "trimmed blocks read as zeros")
eq(data[128 * KiB:], b"\x22" * (64 * KiB), "data after the trim")
eq(one_chunk(extents(h, 192 * KiB, C), BA), [(4096, 0), (124 * KiB, 3), (64 * KiB, 0)],
   "base:allocation after TRIM")
h.trim(2048, C + 130 * KiB)  # less than a block: nothing happens
eq(h.pread(64 * KiB, C + 128 * KiB), b"\x22" * (64 * KiB), "a sub-block trim keeps the data")
h.trim(64 * KiB, C + 128 * KiB, nbd.CMD_FLAG_FUA)
eq(one_chunk(extents(h, 192 * KiB, C), BA), [(4096, 0), (188 * KiB, 3)], "base:allocation after a FUA TRIM")

# --- WRITE_ZEROES ---
D = 12 * MiB
h.pwrite(b"\x33" * (320 * KiB), D)
h.zero(64 * KiB, D, nbd.CMD_FLAG_NO_HOLE)
h.zero(64 * KiB, D + 64 * KiB)
h.zero(64 * KiB, D + 128 * KiB, nbd.CMD_FLAG_FAST_ZERO)  # aligned: fast, succeeds
h.zero(4096, D + 192 * KiB, nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE)
h.zero(1024, D + 256 * KiB + 512)  # partial block: read-modify-write
data = h.pread(320 * KiB, D)
eq(data[:196 * KiB], bytes(196 * KiB), "zeroed ranges read as zeros")
eq(data[196 * KiB:256 * KiB], b"\x33" * (60 * KiB), "data between zeroed ranges")
eq(data[256 * KiB:260 * KiB], b"\x33" * 512 + bytes(1024) + b"\x33" * 2560, "partial-block zero")
eq(data[260 * KiB:], b"\x33" * (60 * KiB), "data after")
eq(one_chunk(extents(h, 192 * KiB, D), BA), [(64 * KiB, 2), (128 * KiB, 3)],
   "base:allocation: NO_HOLE zero = allocated zero (2), plain zero = hole (3)")
eq(status_at(one_chunk(extents(h, 4096, D + 192 * KiB), BA), D + 192 * KiB, D + 192 * KiB), 2,
   "FUA|NO_HOLE zero")

# --- CACHE ---
h.cache(1 * MiB, 0)
h.cache(size, 0)  # longer than the maximum payload: a hint, still fine
h.cache(4096, size - 4096)

# --- BLOCK_STATUS ---
pairs = one_chunk(extents(h, size, 0), BA)
at = 0
for length, flags in pairs:
    check(length > 0 and length % 512 == 0, "extent length %d", length)
    check(flags in (0, 2, 3), "base:allocation flags %d", flags)
    at += length
eq(at, size, "extents cover the whole request")
for (l1, f1), (l2, f2) in zip(pairs, pairs[1:]):
    check(f1 != f2, "neighbouring extents with the same flags %d are not merged: %r", f1, pairs)
eq(status_at(pairs, 0, A), 0, "data at A")
eq(status_at(pairs, 0, 30 * MiB), 3, "hole at 30 MiB")
# REQ_ONE: exactly one extent, not longer than asked.
for off, n, want_flags in ((A, 1 * MiB, 0), (0, 1 * MiB, 3), (D, 1 * MiB, 2), (0, size, 3), (A + 4096, 512, 0)):
    pairs = one_chunk(extents(h, n, off, nbd.CMD_FLAG_REQ_ONE), BA)
    eq(len(pairs), 1, "REQ_ONE extents at %d" % off)
    check(0 < pairs[0][0] <= n, "REQ_ONE extent length %d for a %d-byte request", pairs[0][0], n)
    eq(pairs[0][1], want_flags, "REQ_ONE flags at %d" % off)
# An extent that starts mid-block.
pairs = one_chunk(extents(h, 64 * KiB, A + 512), BA)
eq(pairs[0], (64 * KiB, 0), "status from a 512-aligned offset inside data")

# --- pipelining: 64 writes and 64 reads in flight at once ---
E = 40 * MiB
cookies = []
for i in range(64):
    buf = nbd.Buffer.from_bytearray(bytearray([i + 1]) * 4096)
    cookies.append(h.aio_pwrite(buf, E + i * 64 * KiB))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    eq(h.aio_command_completed(c), True, "pipelined write %d completed" % c)
reads = []
for i in range(64):
    buf = nbd.Buffer(4096)
    reads.append((i, buf, h.aio_pread(buf, E + i * 64 * KiB)))
while h.aio_in_flight() > 0:
    h.poll(-1)
for i, buf, c in reads:
    eq(h.aio_command_completed(c), True, "pipelined read completed")
    eq(buf.to_bytearray(), bytearray([i + 1]) * 4096, "pipelined read %d" % i)

# --- DISC ---
h.shutdown()
eq(h.aio_is_closed(), True, "closed after DISC")
expect_nbd_error(h.pread, 512, 0)

# The data is still there for a new connection.
h2 = connect(cfg["uri"])
eq(h2.pread(64 * KiB, A), pat, "data after reconnecting")
eq(h2.pread(4096, E + 5 * 64 * KiB), bytes([6]) * 4096, "pipelined data after reconnecting")
h2.shutdown()
log("commands: ok")
