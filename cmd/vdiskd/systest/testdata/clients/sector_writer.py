#!/usr/bin/python3
# sector_writer.py URI C N
#
# One of 4 concurrent writers: for each of N 4 KiB blocks, write 512-byte
# sectors C and C+4 with asynchronous (pipelined) requests, up to 64 in
# flight, then flush. Sector s of block b gets the byte (b*8+s) % 251 + 1.
# The four writers together fill every sector; each write is a partial
# block, so the server merges them (read-modify-write) while the other
# connections write the rest of the same blocks.
#
# Run with the system python (/usr/bin/python3), which has the nbd module.
import sys

import nbd

uri, c, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
for blk in range(n):
    for s in (c, c + 4):
        v = (blk * 8 + s) % 251 + 1
        h.aio_pwrite(bytes([v]) * 512, blk * 4096 + s * 512)
    while h.aio_in_flight() > 64:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
h.shutdown()
