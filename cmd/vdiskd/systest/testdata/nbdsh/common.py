# Shared helpers of the nbdsh protocol scripts (run by nbd_protocol_test.go
# under nbdsh, which provides the libnbd python module).
#
# Two clients live here: libnbd (the nbd module) for everything libnbd can
# send, and Raw, a socket-level NBD client for what libnbd refuses to send
# (unknown options and commands, EXPORT_NAME, options with stray data).

import errno
import json
import socket
import struct
import sys
import time

import nbd

# --- assertions -------------------------------------------------------------


def check(cond, msg, *args):
    """assert with a message that survives python -O."""
    if not cond:
        raise AssertionError(msg % args if args else msg)


def eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def expect_errno(want, fn, *args, **kw):
    """Run a libnbd call that must fail with the errno want (an errno.E*)."""
    try:
        r = fn(*args, **kw)
    except nbd.Error as e:
        if e.errnum != want:
            raise AssertionError("%s%r: got errno %s (%s), want %s" % (
                getattr(fn, "__name__", fn), args, e.errno, e.string, errno.errorcode[want]))
        return e
    raise AssertionError("%s%r succeeded (%r), want %s" % (
        getattr(fn, "__name__", fn), args, r if not isinstance(r, (bytes, bytearray)) else "%d bytes" % len(r),
        errno.errorcode[want]))


def expect_nbd_error(fn, *args, **kw):
    """Run a libnbd call that must fail, with any errno."""
    try:
        r = fn(*args, **kw)
    except nbd.Error as e:
        return e
    raise AssertionError("%s%r succeeded (%r), want an error" % (getattr(fn, "__name__", fn), args, r))


def log(*a):
    print(*a, flush=True)


def config():
    """The single JSON argument most scripts take."""
    return json.loads(sys.argv[1])


# --- libnbd -----------------------------------------------------------------


def connect(uri, contexts=(), strict=None, block_size=True, structured=True, full_info=False):
    h = nbd.NBD()
    for c in contexts:
        h.add_meta_context(c)
    if not block_size:
        h.set_request_block_size(False)
    if not structured:
        h.set_request_structured_replies(False)
    if full_info:
        h.set_full_info(True)
    h.connect_uri(uri)
    if strict is not None:
        h.set_strict_mode(strict)
    return h


def extents(h, count, offset, flags=0):
    """block_status: {context: [[(length, flags), ...] per chunk]}."""
    got = {}

    def cb(ctx, off, entries, err):
        eq(off, offset, "block_status callback offset")
        pairs = [(entries[i], entries[i + 1]) for i in range(0, len(entries), 2)]
        got.setdefault(ctx, []).append(pairs)
        return 0

    h.block_status(count, offset, cb, flags)
    return got


def one_chunk(got, ctx):
    chunks = got.get(ctx)
    check(chunks is not None, "no block status for %s: %r", ctx, got)
    eq(len(chunks), 1, "chunks for %s" % ctx)
    return chunks[0]


def status_at(pairs, start, pos):
    """The flags of the extent list pairs (starting at start) covering pos."""
    at = start
    for length, flags in pairs:
        if at <= pos < at + length:
            return flags
        at += length
    raise AssertionError("offset %d is past the extents %r (start %d)" % (pos, pairs, start))


def read_chunks(h, count, offset, flags=0):
    """pread_structured: the data and the list of (offset, length, status)."""
    chunks = []

    def cb(sub, off, status, err):
        chunks.append((off, len(sub), status))
        return 0

    data = h.pread_structured(count, offset, cb, flags)
    chunks.sort()
    return bytes(data), chunks


# --- raw protocol -----------------------------------------------------------

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC = 0x3e889045565a9

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
ERR = 1 << 31
REP_ERR_UNSUP = ERR + 1
REP_ERR_POLICY = ERR + 2
REP_ERR_INVALID = ERR + 3
REP_ERR_TLS_REQD = ERR + 5
REP_ERR_UNKNOWN = ERR + 6
REP_ERR_SHUTDOWN = ERR + 7
REP_ERR_BLOCK_SIZE_REQD = ERR + 8
REP_ERR_TOO_BIG = ERR + 9

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668e33ef

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CHUNK_NONE = 0
CHUNK_OFFSET_DATA = 1
CHUNK_OFFSET_HOLE = 2
CHUNK_BLOCK_STATUS = 5
CHUNK_ERROR = 0x8001
CHUNK_ERROR_OFFSET = 0x8002

TFLAGS_RW_SR = 0x0ded   # writable, structured replies
TFLAGS_RW = 0x0d6d      # writable, no structured replies (no DF)
TFLAGS_RO_SR = 0x058f   # read-only, structured replies
TFLAGS_RO = 0x050f

REPLY_NAMES = {REP_ACK: "ACK", REP_SERVER: "SERVER", REP_INFO: "INFO", REP_META_CONTEXT: "META_CONTEXT",
               REP_ERR_UNSUP: "ERR_UNSUP", REP_ERR_POLICY: "ERR_POLICY", REP_ERR_INVALID: "ERR_INVALID",
               REP_ERR_TLS_REQD: "ERR_TLS_REQD", REP_ERR_UNKNOWN: "ERR_UNKNOWN", REP_ERR_SHUTDOWN: "ERR_SHUTDOWN",
               REP_ERR_BLOCK_SIZE_REQD: "ERR_BLOCK_SIZE_REQD", REP_ERR_TOO_BIG: "ERR_TOO_BIG"}


def rname(t):
    return REPLY_NAMES.get(t, "reply %#x" % t)


def info_data(name, requests=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(requests)) + b"".join(
        struct.pack(">H", r) for r in requests)


def meta_data(name, queries):
    n = name.encode()
    b = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        qb = q.encode()
        b += struct.pack(">I", len(qb)) + qb
    return b


class Closed(Exception):
    pass


class Raw:
    """A socket-level NBD client: fixed newstyle, one option or request at a
    time unless the caller pipelines on purpose."""

    def __init__(self, addr, client_flags=3, timeout=15):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_flags = client_flags
        magic, opt, self.handshake_flags = struct.unpack(">QQH", self.recvn(18))
        eq(magic, NBDMAGIC, "NBDMAGIC")
        eq(opt, IHAVEOPT, "IHAVEOPT")
        self.s.sendall(struct.pack(">I", client_flags))
        self.structured = False

    def close(self):
        self.s.close()

    def recvn(self, n):
        b = bytearray()
        while len(b) < n:
            try:
                c = self.s.recv(n - len(b))
            except ConnectionResetError:
                c = b""
            if not c:
                raise Closed("server closed the connection after %d of %d bytes" % (len(b), n))
            b += c
        return bytes(b)

    def expect_hangup(self, within=5.0):
        """The server must close the connection (EOF or reset) without
        sending anything more."""
        self.s.settimeout(within)
        try:
            b = self.s.recv(65536)
        except ConnectionResetError:
            return
        except socket.timeout:
            raise AssertionError("the server did not hang up within %.1fs" % within)
        eq(b, b"", "bytes received instead of a hang-up")

    # Negotiation.

    def send_option(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def read_option_reply(self, opt):
        magic, o, typ, n = struct.unpack(">QIII", self.recvn(20))
        eq(magic, REPLYMAGIC, "option reply magic")
        eq(o, opt, "option echoed in the reply")
        return typ, self.recvn(n)

    def option(self, opt, data=b""):
        """Send an option; return the replies up to the final ACK or error,
        as a list of (type, data)."""
        self.send_option(opt, data)
        replies = []
        while True:
            typ, d = self.read_option_reply(opt)
            replies.append((typ, d))
            if typ == REP_ACK or typ & ERR:
                return replies

    def option_error(self, opt, data, want, msg_contains=None):
        """An option that must fail with the reply want."""
        replies = self.option(opt, data)
        eq(len(replies), 1, "replies to option %d (%r)" % (opt, replies))
        typ, d = replies[0]
        check(typ == want, "option %d: got %s %r, want %s", opt, rname(typ), d, rname(want))
        msg = d.decode("utf-8")
        if msg_contains is not None:
            check(msg_contains in msg, "option %d: message %r lacks %r", opt, msg, msg_contains)
        return msg

    def option_ok(self, opt, data=b""):
        replies = self.option(opt, data)
        typ, d = replies[-1]
        check(typ == REP_ACK, "option %d: got %s %r, want ACK", opt, rname(typ), d)
        return replies[:-1]

    def structured_reply(self):
        self.option_ok(OPT_STRUCTURED_REPLY)
        self.structured = True

    def info(self, name, requests=(INFO_BLOCK_SIZE,), go=False):
        """INFO or GO: a dict of what came back."""
        opt = OPT_GO if go else OPT_INFO
        out = {}
        for typ, d in self.option_ok(opt, info_data(name, requests)):
            eq(typ, REP_INFO, "reply to INFO/GO")
            it = struct.unpack(">H", d[:2])[0]
            if it == INFO_EXPORT:
                eq(len(d), 12, "INFO_EXPORT length")
                out["size"], out["flags"] = struct.unpack(">QH", d[2:])
            elif it == INFO_NAME:
                out["name"] = d[2:].decode()
            elif it == INFO_DESCRIPTION:
                out["description"] = d[2:].decode()
            elif it == INFO_BLOCK_SIZE:
                eq(len(d), 14, "INFO_BLOCK_SIZE length")
                out["block_size"] = struct.unpack(">III", d[2:])
            else:
                out.setdefault("other", []).append(d)
        check("size" in out, "no INFO_EXPORT in %r", out)
        if go:
            self.export_size, self.export_flags = out["size"], out["flags"]
        return out

    def go(self, name, requests=(INFO_BLOCK_SIZE,)):
        return self.info(name, requests, go=True)

    def list_exports(self):
        out = []
        for typ, d in self.option_ok(OPT_LIST):
            eq(typ, REP_SERVER, "reply to LIST")
            n = struct.unpack(">I", d[:4])[0]
            out.append((d[4:4 + n].decode(), d[4 + n:].decode()))
        return out

    def meta(self, opt, name, queries):
        out = []
        for typ, d in self.option_ok(opt, meta_data(name, queries)):
            eq(typ, REP_META_CONTEXT, "reply to a meta-context option")
            out.append((struct.unpack(">I", d[:4])[0], d[4:].decode()))
        return out

    # Transmission.

    def send_request(self, typ, offset=0, length=0, flags=0, cookie=1, payload=b""):
        self.s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, typ, cookie, offset, length) + payload)

    def read_reply(self, read_length=0):
        """One reply: a dict with cookie, error (0 or an errno), and for
        structured replies the chunks [(flags, type, payload)]. read_length
        is what a successful simple READ reply carries."""
        magic = struct.unpack(">I", self.recvn(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recvn(12))
            r = {"simple": True, "cookie": cookie, "error": err, "chunks": []}
            if err == 0 and read_length:
                r["data"] = self.recvn(read_length)
            return r
        eq(magic, STRUCTURED_MAGIC, "reply magic")
        r = {"simple": False, "chunks": [], "error": 0}
        while True:
            flags, typ, cookie, n = struct.unpack(">HHQI", self.recvn(16))
            payload = self.recvn(n)
            r["chunks"].append((flags, typ, payload))
            r.setdefault("cookie", cookie)
            eq(cookie, r["cookie"], "cookie of every chunk of one reply")
            if typ & 0x8000:
                check(len(payload) >= 6, "error chunk too short: %r", payload)
                err, mlen = struct.unpack(">IH", payload[:6])
                check(err != 0, "error chunk with error 0")
                r["error"] = err
                r["message"] = payload[6:6 + mlen].decode()
            if flags & 1:
                return r
            magic = struct.unpack(">I", self.recvn(4))[0]
            eq(magic, STRUCTURED_MAGIC, "next chunk magic")

    def request(self, typ, offset=0, length=0, flags=0, cookie=1, payload=b""):
        self.send_request(typ, offset, length, flags, cookie, payload)
        r = self.read_reply(length if typ == CMD_READ else 0)
        eq(r["cookie"], cookie, "cookie echoed")
        return r

    def expect_request_error(self, want, typ, offset=0, length=0, flags=0, cookie=7, payload=b""):
        r = self.request(typ, offset, length, flags, cookie, payload)
        check(r["error"] == want, "command %d flags %#x off %d len %d: got error %d (%r), want %d",
              typ, flags, offset, length, r["error"], r.get("message"), want)
        if self.structured and not r["simple"]:
            # An error is the only chunk, carries DONE, and is ERROR or
            # ERROR_OFFSET.
            eq(len(r["chunks"]), 1, "chunks of an error reply")
            f, t, _ = r["chunks"][0]
            check(t in (CHUNK_ERROR, CHUNK_ERROR_OFFSET), "error chunk type %#x", t)
            check(f & 1, "error chunk without DONE")
        return r


def wait_until(pred, timeout=5.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
