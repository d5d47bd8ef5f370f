# A long-lived nbdsh process the Go test drives over stdin, one command a
# line, each answered with one line "ok ..." or "error ...":
#   open NAME URI [CONTEXT...]     connect (GO) and keep the handle
#   pread NAME OFFSET LENGTH       read; answers the first byte
#   pwrite NAME OFFSET LENGTH BYTE write
#   flush NAME / close NAME        FLUSH / DISC
#   raw NAME ADDR                  a raw connection that stops after the handshake
#   rawopt NAME OPTION             send an option without data: "ok ERR_..." with the final reply
#   eshutdown NAME                 read until ESHUTDOWN comes (at most 3 s)
#   untildead NAME                 read every 100 ms while the answer is ESHUTDOWN:
#                                  "ok <seconds> <count> <last errno>"
#   quit

import sys
import time

from common import *

handles = {}
raws = {}


def answer(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()


def run(words):
    cmd, args = words[0], words[1:]
    if cmd == "open":
        h = nbd.NBD()
        for c in args[2:]:
            h.add_meta_context(c)
        h.connect_uri(args[1])
        handles[args[0]] = h
        return "%d %s" % (h.get_size(), "ro" if h.is_read_only() else "rw")
    if cmd == "pread":
        b = handles[args[0]].pread(int(args[2]), int(args[1]))
        return "%02x" % b[0] if b else ""
    if cmd == "pwrite":
        handles[args[0]].pwrite(bytes([int(args[3], 0)]) * int(args[2]), int(args[1]))
        return ""
    if cmd == "flush":
        handles[args[0]].flush()
        return ""
    if cmd == "close":
        handles.pop(args[0]).shutdown()
        return ""
    if cmd == "raw":
        raws[args[0]] = Raw(args[1])
        return "%#x" % raws[args[0]].handshake_flags
    if cmd == "rawopt":
        r = raws[args[0]]
        try:
            typ, d = r.option(int(args[1]))[-1]
        except (Closed, OSError) as e:
            return "closed %s" % e
        return "%s %s" % (rname(typ), d.decode(errors="replace"))
    if cmd == "eshutdown":
        h = handles[args[0]]
        deadline = time.time() + 3
        while True:
            try:
                h.pread(512, 0)
            except nbd.Error as e:
                if e.errnum == errno.ESHUTDOWN:
                    return "ESHUTDOWN %s" % e.string
                raise
            if time.time() > deadline:
                raise AssertionError("no ESHUTDOWN within 3 s")
            time.sleep(0.02)
    if cmd == "untildead":
        h = handles[args[0]]
        start, n = time.time(), 0
        while time.time() - start < 10:
            try:
                h.pread(512, 0)
                raise AssertionError("a read succeeded during shutdown")
            except nbd.Error as e:
                if e.errnum != errno.ESHUTDOWN:
                    return "%.2f %d %s" % (time.time() - start, n, e.errno)
                n += 1
            time.sleep(0.1)
        raise AssertionError("still connected 10 s after shutdown")
    if cmd == "quit":
        sys.exit(0)
    raise AssertionError("unknown command %r" % cmd)


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    try:
        answer(("ok " + run(words)).rstrip())
    except nbd.Error as e:
        answer("error %s %s" % (e.errno, e.string))
    except SystemExit:
        raise
    except BaseException as e:
        answer("error %s %s" % (type(e).__name__, e))
