# Checks and writes data through NBD around the REST steps of a test.
# Argument: {"uri": ...,
#            "expect": [[offset, length, byte], ...]  checked first,
#            "writes": [[offset, length, byte], ...], "zeroes": [[offset, length], ...]  then FLUSH,
#            "fua": [[offset, length, byte], ...]  written with FUA and no FLUSH (for the kill -9 check)}.

import sys

from common import *

cfg = config()
h = connect(cfg["uri"])
for off, n, b in cfg.get("expect", []):
    eq(h.pread(n, off), bytes([b]) * n, "content at %d" % off)
for off, n, b in cfg.get("writes", []):
    h.pwrite(bytes([b]) * n, off)
for off, n in cfg.get("zeroes", []):
    h.zero(n, off)
if "fua" in cfg:
    for off, n, b in cfg["fua"]:
        h.pwrite(bytes([b]) * n, off, nbd.CMD_FLAG_FUA)
    h.shutdown()
    sys.exit(0)
h.flush()
h.shutdown()
