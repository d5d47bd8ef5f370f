# CAN_MULTI_CONN: a write on one connection and a FLUSH on another, and
# every connection sees the data.
# Argument: {"uri": <writable VDI>}.

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
hs = [connect(cfg["uri"]) for _ in range(4)]
for h in hs:
    eq(h.can_multi_conn(), True, "CAN_MULTI_CONN")

hs[0].pwrite(b"\x81" * (64 * KiB), 0)       # no FUA
hs[1].flush()
for i, h in enumerate(hs):
    eq(h.pread(64 * KiB, 0), b"\x81" * (64 * KiB), "connection %d sees the write" % i)

hs[2].pwrite(b"\x82" * 4096, 1 * MiB, nbd.CMD_FLAG_FUA)
hs[3].zero(64 * KiB, 0)
hs[3].trim(64 * KiB, 2 * MiB)
hs[0].flush()
for i, h in enumerate(hs):
    eq(h.pread(4096, 1 * MiB), b"\x82" * 4096, "FUA write seen on %d" % i)
    eq(h.pread(64 * KiB, 0), bytes(64 * KiB), "zero seen on %d" % i)

# All connections write at once (pipelined), one flushes, all read back.
cookies = []
for i, h in enumerate(hs):
    for j in range(16):
        buf = nbd.Buffer.from_bytearray(bytearray([0x10 * i + j]) * 4096)
        cookies.append((h, h.aio_pwrite(buf, 4 * MiB + (16 * i + j) * 64 * KiB)))
for h in hs:
    while h.aio_in_flight() > 0:
        h.poll(-1)
for h, c in cookies:
    eq(h.aio_command_completed(c), True, "write completed")
hs[1].flush()
for h in hs:
    for i in range(4):
        for j in range(16):
            eq(h.pread(4096, 4 * MiB + (16 * i + j) * 64 * KiB), bytes([0x10 * i + j]) * 4096, "interleaved writes")
for h in hs:
    h.shutdown()
log("multiconn: ok")
