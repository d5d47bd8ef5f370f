# The meta contexts an export lists, and the dirty extents of one bitmap.
# Argument: {"uri": ..., "contexts": [every context LIST_META_CONTEXT must give],
#            "base": <snapshot uuid or absent>, "dirty": [[offset, length], ...]}.

from common import *

cfg = config()
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(cfg["uri"])
got = []
h.opt_list_meta_context(lambda n: got.append(n))
eq(sorted(got), sorted(cfg["contexts"]), "meta contexts")
if cfg.get("base"):
    ctx = "qemu:dirty-bitmap:" + cfg["base"]
    h.add_meta_context(ctx)
    h.opt_go()
    size = h.get_size()
    dirty = []
    step = (1 << 32) - (64 << 10)  # BLOCK_STATUS lengths are 32 bits
    for start in range(0, size, step):
        n = min(step, size - start)
        at = start
        for length, flags in one_chunk(extents(h, n, start), ctx):
            check(flags in (0, 1), "dirty flags %d", flags)
            if flags:
                if dirty and dirty[-1][0] + dirty[-1][1] == at:
                    dirty[-1][1] += length
                else:
                    dirty.append([at, length])
            at += length
        eq(at, start + n, "extents cover the request")
    eq(dirty, cfg["dirty"], "dirty extents")
    h.shutdown()
log("bitmap: ok")
