# CBT bases as qemu:dirty-bitmap:<snapshot> contexts next to
# base:allocation, on an 8 GiB sparse VDI.
# Argument (JSON): addr, uri (live VDI), export, s1, s2 (its CBT
# snapshots), s2_uri, data [[off, len]] (allocated ranges), dirty_live and
# dirty_s2 [[off, len]] (64 KiB blocks changed since s1), lcb_live and
# lcb_s2 (list_changed_blocks counts from REST), late (an offset nothing
# wrote yet).

from common import *

cfg = config()
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BA = nbd.CONTEXT_BASE_ALLOCATION
S1, S2 = "qemu:dirty-bitmap:" + cfg["s1"], "qemu:dirty-bitmap:" + cfg["s2"]
CHUNK = 4 * GiB - 64 * KiB  # BLOCK_STATUS lengths are 32 bits


def merge(ranges):
    out = []
    for off, n in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((off, n))
    return out


def whole_disk(h, size):
    """BLOCK_STATUS over the whole disk in 4 GiB - 64 KiB requests, each
    answered in one chunk per context covering all of it: the ranges with
    flags f for every context."""
    runs = {}
    for off in range(0, size, CHUNK):
        n = min(CHUNK, size - off)
        got = extents(h, n, off)
        eq(sorted(got), sorted([BA, S1]), "contexts answered")
        for ctx in got:
            pairs = one_chunk(got, ctx)
            at = off
            for length, flags in pairs:
                check(length > 0 and length % 512 == 0, "%s extent length %d", ctx, length)
                if ctx == S1:
                    check(flags in (0, 1), "dirty-bitmap flags %d (only bit 0 may be set)", flags)
                else:
                    check(flags in (0, 2, 3), "base:allocation flags %d", flags)
                runs.setdefault((ctx, flags), []).append((at, length))
                at += length
            eq(at, off + n, "%s extents at %d cover the %d-byte request" % (ctx, off, n))
    return {k: merge(v) for k, v in runs.items()}


# --- LIST_META_CONTEXT on the live VDI ---
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(cfg["uri"])


def listed(*queries):
    h.clear_meta_contexts()
    for q in queries:
        h.add_meta_context(q)
    out = []
    h.opt_list_meta_context(lambda n: out.append(n))
    return sorted(out)


eq(listed(), sorted([BA, S1, S2]), "LIST_META_CONTEXT with 0 queries")
eq(listed("qemu:dirty-bitmap:"), sorted([S1, S2]), "LIST_META_CONTEXT qemu:dirty-bitmap:")
eq(listed("base:"), [BA], "LIST_META_CONTEXT base:")
eq(listed(S1), [S1], "LIST_META_CONTEXT of one bitmap")
eq(listed("qemu:dirty-bitmap:" + "0" * 8), [], "LIST_META_CONTEXT of a bitmap that is not there")

# --- SET_META_CONTEXT selects the exact names asked for, in that order ---
r = Raw(cfg["addr"])
r.structured_reply()
sel = r.meta(OPT_SET_META_CONTEXT, cfg["export"], ["qemu:dirty-bitmap:", "qemu:", S1, "base:", BA, S1])
eq([n for _, n in sel], [S1, BA], "SET_META_CONTEXT")
eq(len(set(i for i, _ in sel)), 2, "distinct context ids")
r.close()

# --- GO with base:allocation and the S1 bitmap ---
h.clear_meta_contexts()
h.add_meta_context(BA)
h.add_meta_context(S1)
h.opt_go()
eq((h.can_meta_context(BA), h.can_meta_context(S1), h.can_meta_context(S2)), (True, True, False), "selected contexts")
size = h.get_size()
eq(size, 8 * GiB, "size")
runs = whole_disk(h, size)
eq(runs.get((S1, 1)), merge(map(tuple, cfg["dirty_live"])), "dirty blocks since s1")
eq(sum(n for _, n in runs[(S1, 1)]) // (64 * KiB), cfg["lcb_live"], "dirty blocks = list_changed_blocks")
eq(runs.get((BA, 0)), merge(map(tuple, cfg["data"])), "allocated data")
eq(sum(n for _, n in runs[(BA, 0)] + runs[(BA, 3)]), size, "data + holes")

# REQ_ONE: one extent per context, no longer than asked.
for off, n, want in ((0, 1 * GiB, {BA: (64 * KiB, 0), S1: (64 * KiB, 1)}),
                     (64 * KiB, 1 * GiB, {BA: (1 * GiB - 64 * KiB, 3), S1: (1 * GiB, 0)}),
                     (4 * KiB + 512, 1 * MiB, {BA: (60 * KiB - 512, 0), S1: (60 * KiB - 512, 1)})):
    got = extents(h, n, off, nbd.CMD_FLAG_REQ_ONE)
    eq({ctx: one_chunk(got, ctx) for ctx in got}, {ctx: [v] for ctx, v in want.items()}, "REQ_ONE at %d" % off)

# Writes on this connection and on another show at once.
late = cfg["late"]
h.pwrite(b"\x01" * 4096, late)
got = extents(h, 64 * KiB, late, nbd.CMD_FLAG_REQ_ONE)
eq(one_chunk(got, S1), [(64 * KiB, 1)], "dirty right after a write")
h2 = connect(cfg["uri"])
h2.pwrite(b"\x02" * 512, late + 128 * KiB + 512)
h2.shutdown()
got = extents(h, 256 * KiB, late)
eq(one_chunk(got, S1), [(64 * KiB, 1), (64 * KiB, 0), (64 * KiB, 1), (64 * KiB, 0)], "dirty after another connection wrote")
eq(one_chunk(got, BA), [(4 * KiB, 0), (124 * KiB, 3), (4 * KiB, 0), (124 * KiB, 3)], "allocation after the writes")
h.shutdown()

# --- the read-only snapshot s2 has the s1 bitmap too ---
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(cfg["s2_uri"])
ctxs = []
h.opt_list_meta_context(lambda n: ctxs.append(n))
check(BA in ctxs and S1 in ctxs, "contexts of s2: %r", ctxs)
h.add_meta_context(S1)
h.add_meta_context(BA)
h.opt_go()
eq(h.is_read_only(), True, "s2 is read-only")
runs = whole_disk(h, size)
eq(runs.get((S1, 1)), merge(map(tuple, cfg["dirty_s2"])), "dirty blocks of s2 since s1")
eq(sum(n for _, n in runs[(S1, 1)]) // (64 * KiB), cfg["lcb_s2"], "s2 dirty blocks = list_changed_blocks")
h.shutdown()
log("dirty: ok")
