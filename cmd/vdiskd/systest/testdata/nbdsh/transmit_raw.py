# Transmission at the socket level, for what libnbd cannot send: unknown
# commands, exact reply shapes, DISC with a request in flight, EXPORT_NAME,
# and WRITE payloads over the 32 MiB maximum (the server hangs up).
# Argument: {"addr": host:port, "export": <writable 64 MiB VDI>, "uri": <same, as a URI>}.

import socket
import struct
from errno import EINVAL, ENOSPC

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
addr, export = cfg["addr"], cfg["export"]

# --- GO with structured replies ---
r = Raw(addr)
eq(r.handshake_flags, 0x0003, "handshake flags (FIXED_NEWSTYLE|NO_ZEROES)")
r.structured_reply()
info = r.go(export)
eq(info["flags"], TFLAGS_RW_SR, "transmission flags")
eq(info["block_size"], (512, 64 * KiB, 32 * MiB), "block sizes")
size = info["size"]

# WRITE and FLUSH: a reply with no data (simple, or a NONE chunk).
for typ, kw in ((CMD_WRITE, dict(offset=0, length=4096, payload=b"\x61" * 4096)), (CMD_FLUSH, {}),
                (CMD_WRITE, dict(offset=8192, length=512, flags=1, payload=b"\x62" * 512)),
                (CMD_TRIM, dict(offset=1 * MiB, length=64 * KiB)), (CMD_CACHE, dict(offset=0, length=4096)),
                (CMD_WRITE_ZEROES, dict(offset=2 * MiB, length=64 * KiB, flags=2))):
    rep = r.request(typ, cookie=0xdeadbeefcafef00d, **kw)
    eq(rep["error"], 0, "command %d" % typ)
    if not rep["simple"]:
        eq([(f, t) for f, t, _ in rep["chunks"]], [(1, CHUNK_NONE)], "chunks of command %d" % typ)

# READ of data: one OFFSET_DATA chunk; of a hole: OFFSET_HOLE; mixed: both.
rep = r.request(CMD_READ, 0, 4096, cookie=42)
eq(rep["simple"], False, "a READ reply is structured")
eq(len(rep["chunks"]), 1, "chunks")
f, t, p = rep["chunks"][0]
eq((f, t), (1, CHUNK_OFFSET_DATA), "data chunk")
eq(struct.unpack(">Q", p[:8])[0], 0, "data chunk offset")
eq(p[8:], b"\x61" * 4096, "data chunk payload")
rep = r.request(CMD_READ, 4 * MiB, 64 * KiB, cookie=43)
eq([(f, t, p) for f, t, p in rep["chunks"]], [(1, CHUNK_OFFSET_HOLE, struct.pack(">QI", 4 * MiB, 64 * KiB))],
   "hole chunk")
rep = r.request(CMD_READ, 0, 16 * KiB, cookie=44)
covered = {}
for f, t, p in rep["chunks"]:
    off = struct.unpack(">Q", p[:8])[0]
    if t == CHUNK_OFFSET_DATA:
        covered[off] = (len(p) - 8, p[8:])
    else:
        eq(t, CHUNK_OFFSET_HOLE, "chunk type")
        covered[off] = (struct.unpack(">I", p[8:12])[0], None)
check(rep["chunks"][-1][0] & 1 and all(not c[0] & 1 for c in rep["chunks"][:-1]), "DONE only on the last chunk")
buf = bytearray(16 * KiB)
at = 0
for off in sorted(covered):
    eq(off, at, "chunks are contiguous")
    n, d = covered[off]
    if d is not None:
        buf[off:off + n] = d
    at += n
eq(at, 16 * KiB, "chunks cover the read")
eq(bytes(buf), b"\x61" * 4096 + bytes(4096) + b"\x62" * 512 + bytes(16 * KiB - 8704), "mixed read")

# Zero-length READ: a reply without data.
rep = r.request(CMD_READ, 0, 0, cookie=45)
eq(rep["error"], 0, "zero-length read")

# Errors are one ERROR chunk with DONE, the request's cookie and a message.
rep = r.expect_request_error(EINVAL, CMD_READ, size - 512, 1024)
check("read" in rep["message"], "error message %r", rep["message"])
r.expect_request_error(EINVAL, CMD_READ, 0, 512, flags=8)          # REQ_ONE on READ
r.expect_request_error(EINVAL, CMD_READ, 0, 512, flags=0x8000)     # unknown flag
r.expect_request_error(EINVAL, CMD_BLOCK_STATUS, 0, 4096)          # no context selected
r.expect_request_error(EINVAL, CMD_FLUSH, 0, 512)                  # FLUSH with a length
r.expect_request_error(ENOSPC, CMD_WRITE, size, 512, payload=b"x" * 512)
for typ in (8, 9, 11, 0x7fff, 0xffff):                             # unknown commands (8 is RESIZE, not offered)
    r.expect_request_error(EINVAL, typ, 0, 512)

# Pipelining: replies match requests by cookie, whatever their order.
r.send_request(CMD_WRITE, 64 * KiB, 4096, cookie=100, payload=b"\x63" * 4096)
r.send_request(CMD_READ, 0, 4096, cookie=101)
r.send_request(9, 0, 0, cookie=102)
r.send_request(CMD_FLUSH, cookie=103)
got = {}
for _ in range(4):
    rep = r.read_reply()  # structured: only a READ carries data, in chunks
    got[rep["cookie"]] = rep["error"]
eq(got, {100: 0, 101: 0, 102: EINVAL, 103: 0}, "pipelined replies")

# DISC with a WRITE in flight: the WRITE is answered, then the server closes.
r.send_request(CMD_WRITE, 128 * KiB, 64 * KiB, cookie=200, payload=b"\x64" * (64 * KiB))
r.send_request(CMD_DISC, cookie=201)
rep = r.read_reply()
eq((rep["cookie"], rep["error"]), (200, 0), "the WRITE before DISC")
r.expect_hangup()
r.close()

# --- EXPORT_NAME without NO_ZEROES, no structured replies: 124 zero bytes, simple replies ---
r = Raw(addr, client_flags=1)
r.send_option(OPT_EXPORT_NAME, export.encode())
sz, flags = struct.unpack(">QH", r.recvn(10))
eq((sz, flags), (size, TFLAGS_RW), "EXPORT_NAME size and flags (no DF without structured replies)")
eq(r.recvn(124), bytes(124), "EXPORT_NAME padding")
rep = r.request(CMD_READ, 128 * KiB, 4096, cookie=300)
eq((rep["simple"], rep["error"], rep["data"]), (True, 0, b"\x64" * 4096), "simple READ reply")
rep = r.request(CMD_READ, size, 512, cookie=301)
eq((rep["simple"], rep["error"]), (True, EINVAL), "simple error reply")
eq(rep.get("data"), None, "no data after a simple error reply")
rep = r.request(9, 0, 0, cookie=302)
eq((rep["simple"], rep["error"]), (True, EINVAL), "unknown command, simple reply")
rep = r.request(CMD_BLOCK_STATUS, 0, 4096, cookie=303)
eq(rep["error"], EINVAL, "BLOCK_STATUS without structured replies")
# A WRITE whose payload is over 32 MiB: hard disconnect, no reply.
r.send_request(CMD_WRITE, 0, 32 * MiB + 512, cookie=304)
r.expect_hangup()
r.close()

# --- EXPORT_NAME with NO_ZEROES after STRUCTURED_REPLY: 10 bytes, 0x0ded ---
r = Raw(addr)
r.structured_reply()
r.send_option(OPT_EXPORT_NAME, export.encode())
eq(struct.unpack(">QH", r.recvn(10)), (size, TFLAGS_RW_SR), "EXPORT_NAME with structured replies")
rep = r.request(CMD_READ, 128 * KiB, 512, cookie=400)
eq(rep["chunks"][0][1], CHUNK_OFFSET_DATA, "structured READ after EXPORT_NAME")
# The oversized WRITE also with structured replies, with part of its payload sent.
r.send_request(CMD_WRITE, 0, 48 * MiB, cookie=401, payload=b"\x00" * (64 * KiB))
r.expect_hangup()
r.close()

# --- EXPORT_NAME of something that cannot be exported: hard disconnect ---
for bad in ("/00000000-0000-4000-8000-000000000000" + export[export.index("?"):], export.split("?")[0], "", "nope"):
    r = Raw(addr)
    r.send_option(OPT_EXPORT_NAME, bad.encode())
    r.expect_hangup()
    r.close()

# --- the same oversized WRITE through libnbd: the connection dies ---
h = connect(cfg["uri"], strict=0)
expect_nbd_error(h.pwrite, bytes(32 * MiB + 4096), 0)
check(wait_until(lambda: h.aio_is_dead() or h.aio_is_closed(), 5), "libnbd handle still alive: %s", h.connection_state())
expect_nbd_error(h.pread, 512, 0)

# --- broken clients lose their connection, nothing else ---
r = Raw(addr)
r.s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_INFO, 0))  # bad option magic
r.expect_hangup()
r.close()
r = Raw(addr)
r.s.sendall(struct.pack(">QII", IHAVEOPT, 99, (1 << 20) + 1))       # option data over 1 MiB
r.expect_hangup()
r.close()
r = Raw(addr)
for bad in (b"x" * 4097, b"\xff\xfe", b"/a\x00b"):                  # too long, not UTF-8, NUL
    r.option_error(OPT_INFO, struct.pack(">I", len(bad)) + bad + b"\x00\x00", REP_ERR_INVALID)
r.structured_reply()
r.go(export)
r.s.sendall(struct.pack(">IHHQQI", 0x12345678, 0, CMD_READ, 1, 0, 512))  # bad request magic
r.expect_hangup()
r.close()
r = Raw(addr)
r.go(export)
r.send_request(CMD_WRITE, 0, 4096, cookie=1, payload=b"\x65" * 100)   # gone mid-payload
r.close()
r = Raw(addr)
r.s.close()                                                          # gone before its flags
s = socket.create_connection(tuple([addr.rsplit(":", 1)[0], int(addr.rsplit(":", 1)[1])]))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")                               # not NBD at all
s.settimeout(5)
got = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        got += c
except ConnectionResetError:
    pass
check(len(got) == 18 and got.startswith(b"NBDMAGIC"), "answer to HTTP: %r", got[:40])
s.close()

# The export is still fine for a new client, and nothing of the refused writes landed.
h = connect(cfg["uri"])
eq(h.pread(4096, 0), b"\x61" * 4096, "data after the hang-ups")
h.shutdown()
log("transmit_raw: ok")
