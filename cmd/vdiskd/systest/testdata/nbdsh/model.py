# Random WRITE / WRITE_ZEROES / TRIM / READ / BLOCK_STATUS against an
# in-memory model of the disk, over three connections: two aligned (they
# asked for INFO_BLOCK_SIZE), one that did not ask and sends any byte
# alignment. Every read (plain, DF, and each OFFSET_HOLE chunk) must match
# the model, and base:allocation must never call data zero that is not.
# With api/token/uuid it also snapshots the VDI now and then (REST) and, at
# the end, checks every snapshot against the model as it was, and a clone of
# the first snapshot against that snapshot, before and after the clone is
# written to.
# With cbt, CBT is on from the start, and the qemu:dirty-bitmap of the
# first snapshot must cover every 64 KiB block that differs from it, on
# the live VDI and on every later snapshot (never under-report).
# Argument: {"uri": <writable VDI>, "seed": N, "ops": N, "api", "token", "uuid", "cbt": bool}.

import json
import random
import urllib.request

from common import *

cfg = config()
KiB = 1 << 10
BA = nbd.CONTEXT_BASE_ALLOCATION
rnd = random.Random(cfg["seed"])

aligned = [connect(cfg["uri"], contexts=[BA]) for _ in range(2)]
free = connect(cfg["uri"], contexts=[BA], block_size=False, strict=0)
size = free.get_size()
model = bytearray(size)
counter = 0


def pick(align, maxlen):
    n = rnd.choice([align, 4 * KiB, 64 * KiB, rnd.randrange(1, maxlen // align + 1) * align])
    n = min(n, maxlen)
    off = rnd.randrange(0, (size - n) // align + 1) * align
    # Bias towards the interesting places: block and extent edges.
    if rnd.random() < 0.3:
        off = max(0, min(size - n, (off // (64 * KiB)) * 64 * KiB + rnd.choice([-align, 0, align])))
        off -= off % align
    return off, n


def fill(n):
    global counter
    counter += 1
    return bytes(((counter * 37 + i // 512) & 0xff) or 1 for i in range(n))


def verify_read(h, off, n, what):
    flags = nbd.CMD_FLAG_DF if (h is not free and rnd.random() < 0.3) else 0
    if h is free:
        data = bytes(h.pread(n, off))
    else:
        data, chunks = read_chunks(h, n, off, flags)
        at = off
        for o, l, st in chunks:
            eq(o, at, "%s: chunk offset" % what)
            at += l
            if st == nbd.READ_HOLE:
                check(model[o:o + l] == bytes(l), "%s: hole chunk at %d+%d over data", what, o, l)
        eq(at, off + n, "%s: chunks cover the read" % what)
        if flags:
            eq(len(chunks), 1, "%s: DF chunks" % what)
    if data != model[off:off + n]:
        bad = next(i for i in range(n) if data[i] != model[off + i])
        raise AssertionError("%s: read %d+%d differs from the model at %d: got %02x want %02x" % (
            what, off, n, off + bad, data[bad], model[off + bad]))


def verify_status(h, off, n, what):
    pairs = one_chunk(extents(h, n, off), BA)
    at = off
    for length, flags in pairs:
        check(flags in (0, 2, 3), "%s: flags %d", what, flags)
        end = min(at + length, off + n)
        if flags & 2:
            check(model[at:end] == bytes(end - at), "%s: extent %d+%d says zero but holds data", what, at, length)
        at += length
    check(at >= off + n, "%s: extents stop at %d before %d", what, at, off + n)


snaps = []  # (uuid, model copy)


def rest(method, path, body=None):
    req = urllib.request.Request(cfg["api"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + cfg["token"]})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


if cfg.get("cbt"):
    rest("POST", "/vdis/%s/enable_cbt" % cfg["uuid"])

for i in range(cfg["ops"]):
    if "api" in cfg and rnd.random() < 0.02:
        for h in aligned + [free]:  # every write acknowledged before the call is in the snapshot
            while h.aio_in_flight() > 0:
                h.poll(-1)
        snaps.append((rest("POST", "/vdis/%s/snapshot" % cfg["uuid"])["uuid"], bytes(model)))
        continue
    op = rnd.random()
    unaligned = rnd.random() < 0.25
    h = free if unaligned else rnd.choice(aligned)
    align = 1 if unaligned else 512
    what = "op %d (%s)" % (i, "unaligned" if unaligned else "aligned")
    if op < 0.35:
        off, n = pick(align, 256 * KiB)
        b = fill(n)
        h.pwrite(b, off, nbd.CMD_FLAG_FUA if rnd.random() < 0.2 else 0)
        model[off:off + n] = b
    elif op < 0.5:
        off, n = pick(align, 512 * KiB)
        h.zero(n, off, rnd.choice([0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FUA]))
        model[off:off + n] = bytes(n)
    elif op < 0.6:
        off, n = pick(align, 512 * KiB)
        h.trim(n, off)
        lo = (off + 4 * KiB - 1) // (4 * KiB) * (4 * KiB)
        hi = (off + n) // (4 * KiB) * (4 * KiB)
        if hi > lo:  # vdiskd discards the whole 4 KiB blocks inside the range
            model[lo:hi] = bytes(hi - lo)
    elif op < 0.65:
        off, n = pick(4 * KiB, 256 * KiB)
        try:
            h.zero(n, off, nbd.CMD_FLAG_FAST_ZERO)
            model[off:off + n] = bytes(n)
        except nbd.Error as e:
            raise AssertionError("%s: aligned FAST_ZERO %d+%d: %s" % (what, off, n, e.string))
    elif op < 0.9:
        off, n = pick(align, 1 << 20)
        verify_read(h, off, n, what)
    else:
        off, n = pick(512, 4 << 20)
        verify_status(rnd.choice(aligned), off, n, what)
    if rnd.random() < 0.05:
        rnd.choice(aligned).flush()

# Finally the whole disk, in 1 MiB reads, through every connection.
for h in aligned + [free]:
    for off in range(0, size, 1 << 20):
        verify_read(h, off, 1 << 20, "final")
verify_status(aligned[0], 0, size, "final")
for h in aligned + [free]:
    h.shutdown()


def check_image(uri, want, what):
    h = connect(uri, contexts=[BA])
    for off in range(0, size, 1 << 20):
        if bytes(h.pread(1 << 20, off)) != want[off:off + (1 << 20)]:
            raise AssertionError("%s differs from the model in the MiB at %d" % (what, off))
    at = 0
    for length, flags in one_chunk(extents(h, size, 0), BA):
        if flags & 2:
            check(want[at:at + length] == bytes(length), "%s: extent %d+%d says zero but holds data", what, at, length)
        at += length
    return h


for k, (uuid, want) in enumerate(snaps):
    uri = rest("GET", "/vdis/%s/nbd_info" % uuid)[0]["uri"]
    check_image(uri, want, "snapshot %d" % k).shutdown()
if snaps:
    clone = rest("POST", "/vdis/%s/clone" % snaps[0][0])["uuid"]
    uri = rest("GET", "/vdis/%s/nbd_info" % clone)[0]["uri"]
    h = check_image(uri, snaps[0][1], "clone")
    want = bytearray(snaps[0][1])
    for j in range(50):
        off, n = pick(512, 128 * KiB)
        if j % 3 == 0:
            h.zero(n, off)
            want[off:off + n] = bytes(n)
        else:
            b = fill(n)
            h.pwrite(b, off)
            want[off:off + n] = b
    h.shutdown()
    check_image(uri, bytes(want), "written clone").shutdown()
    check_image(rest("GET", "/vdis/%s/nbd_info" % snaps[0][0])[0]["uri"], snaps[0][1], "snapshot under a written clone").shutdown()


def check_dirty(uri, base, want, what):
    ctx = "qemu:dirty-bitmap:" + base[0]
    h = connect(uri, contexts=[ctx])
    dirty = set()
    at = 0
    for length, flags in one_chunk(extents(h, size, 0), ctx):
        check(flags in (0, 1), "%s: dirty flags %d", what, flags)
        check(at % (64 * KiB) == 0 and length % (64 * KiB) == 0, "%s: dirty extent %d+%d not 64 KiB aligned", what, at, length)
        if flags:
            dirty.update(range(at // (64 * KiB), (at + length) // (64 * KiB)))
        at += length
    eq(at, size, "%s: dirty extents cover the disk" % what)
    for blk in range(size // (64 * KiB)):
        lo, hi = blk * 64 * KiB, (blk + 1) * 64 * KiB
        if base[1][lo:hi] != want[lo:hi]:
            check(blk in dirty, "%s: block %d changed since the base but is not dirty", what, blk)
    h.shutdown()
    return len(dirty)


if cfg.get("cbt") and snaps:
    n = check_dirty(cfg["uri"], snaps[0], bytes(model), "live")
    for k, (uuid, want) in enumerate(snaps[1:], 1):
        check_dirty(rest("GET", "/vdis/%s/nbd_info" % uuid)[0]["uri"], snaps[0], want, "snapshot %d" % k)
    log("dirty blocks of the live VDI since the first snapshot: %d" % n)
log("model: ok, %d ops, %d snapshots" % (cfg["ops"], len(snaps)))
