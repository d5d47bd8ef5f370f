#!/usr/bin/python3
# apply_dirty.py URI CONTEXT TARGET
#
# The copy step of an incremental backup, as a libnbd client does it
# (virtnbdbackup style): select CONTEXT (a qemu:dirty-bitmap:* context) on
# URI, walk BLOCK_STATUS over the whole export, and for every extent with
# NBD_STATE_DIRTY copy those bytes of URI into the local raw file TARGET at
# the same offset. Prints the dirty extents as JSON [[offset, length], ...]
# on stdout. Exits non-zero if the context is not offered, a flag other than
# bit 0 shows up, or the extents do not tile the export.
#
# Run with the system python (/usr/bin/python3), which has the nbd module.
import json
import os
import sys

import nbd

uri, ctx, target = sys.argv[1:4]
h = nbd.NBD()
h.add_meta_context(ctx)
h.connect_uri(uri)
if not h.can_meta_context(ctx):
    sys.exit("server did not select " + ctx)
size = h.get_size()
chunk = h.get_block_size(nbd.SIZE_MAXIMUM) or (32 << 20)

dirty = []
off = 0
while off < size:
    got = []

    def cb(metacontext, offset, entries, err):
        if metacontext == ctx:
            got.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(size - off, off, cb)
    if not got:
        sys.exit("no extents for %s at %d" % (ctx, off))
    for length, flags in got:
        if length == 0 or flags & ~1:
            sys.exit("bad extent length %d flags %#x at %d" % (length, flags, off))
        length = min(length, size - off)
        if flags & 1:
            if dirty and dirty[-1][0] + dirty[-1][1] == off:
                dirty[-1][1] += length
            else:
                dirty.append([off, length])
        off += length
        if off >= size:
            break

fd = os.open(target, os.O_WRONLY)
try:
    for start, length in dirty:
        pos = start
        while pos < start + length:
            n = min(chunk, start + length - pos)
            buf = h.pread(n, pos)
            os.pwrite(fd, buf, pos)
            pos += n
    os.fsync(fd)
finally:
    os.close(fd)
h.shutdown()
print(json.dumps(dirty))
