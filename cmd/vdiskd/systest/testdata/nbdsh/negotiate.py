# Negotiation with token auth: INFO/GO, export-name authorisation, LIST,
# meta contexts, and every option's error replies.
# Argument (JSON): addr, api, uri, export (writable VDI "alpha"), name,
# uuid, token, vdis {uuid: name_label} (everything LIST must show),
# cbtmeta (a cbt_metadata VDI), unknown (a uuid nobody has),
# operator_token, vmadmin_token, revoked_token, spare_token (revoked by
# this script while a connection holds it).

import struct
import urllib.request

from common import *

cfg = config()
KiB, MiB = 1 << 10, 1 << 20
addr, export, uuid, token = cfg["addr"], cfg["export"], cfg["uuid"], cfg["token"]
MSG = "no such export, or the session is not valid"


def name_for(u, tok):
    return "/%s?session_id=%s" % (u, tok)


def want_list(tok):
    return sorted((name_for(u, tok), label) for u, label in cfg["vdis"].items())


# --- libnbd in opt mode: LIST refused until an export is named; INFO, LIST, LIST_META_CONTEXT, GO ---
h = nbd.NBD()
h.set_opt_mode(True)
h.set_full_info(True)
h.connect_uri(cfg["uri"])
eq(h.get_export_name(), export, "export name from the URI")
expect_nbd_error(h.opt_list, lambda n, d: 0)
h.opt_info()
info = (h.get_size(), h.is_read_only(), h.can_df(), h.can_trim(), h.can_fast_zero(), h.can_multi_conn(),
        [h.get_block_size(t) for t in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)])
eq(info, (64 * MiB, False, True, True, True, True, [512, 64 * KiB, 32 * MiB]), "INFO")
eq(h.get_export_description(), cfg["name"], "description")
got = []
h.opt_list(lambda n, d: got.append((n, d)))
eq(sorted(got), want_list(token), "LIST after INFO")
ctxs = []
h.opt_list_meta_context(lambda n: ctxs.append(n))
eq(ctxs, ["base:allocation"], "LIST_META_CONTEXT, 0 queries")
# Names that are refused: libnbd reports ERR_UNKNOWN as ENOENT.
for bad in (name_for(uuid, "garbage"), uuid, "/" + uuid, name_for(cfg["unknown"], token)):
    h.set_export_name(bad)
    expect_errno(errno.ENOENT, h.opt_info)
h.set_export_name(export)
h.add_meta_context("base:allocation")
h.opt_go()
eq((h.get_size(), h.is_read_only(), h.can_df(), h.can_trim(), h.can_fast_zero(), h.can_multi_conn(),
    [h.get_block_size(t) for t in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]), info,
   "GO answers what INFO did")
eq(h.can_meta_context("base:allocation"), True, "context selected by GO")
h.pwrite(b"\x01" * 4096, 0)
h.shutdown()

# --- export names that are refused: ERR_UNKNOWN with one message for every reason ---
refused = {
    "bad token": name_for(uuid, "vdt_garbage"),
    "revoked token": name_for(uuid, cfg["revoked_token"]),
    "bare uuid": uuid,
    "no session": "/" + uuid,
    "empty session": name_for(uuid, ""),
    "unknown uuid": name_for(cfg["unknown"], token),
    "vm-operator token": name_for(uuid, cfg["operator_token"]),
    "not a uuid": name_for("disk0", token),
}
for why, bad in refused.items():
    r = Raw(addr)
    r.structured_reply()
    for opt, data in ((OPT_INFO, info_data(bad, [INFO_BLOCK_SIZE])), (OPT_GO, info_data(bad, [INFO_BLOCK_SIZE])),
                      (OPT_LIST_META_CONTEXT, meta_data(bad, [])),
                      (OPT_SET_META_CONTEXT, meta_data(bad, ["base:allocation"]))):
        msg = r.option_error(opt, data, REP_ERR_UNKNOWN)
        check(msg == MSG, "%s, option %d: message %r, want %r", why, opt, msg, MSG)
    if why != "unknown uuid":  # a valid session naming a missing VDI may list
        r.option_error(OPT_LIST, b"", REP_ERR_POLICY)
    r.close()
# A malformed query is refused the same way.
r = Raw(addr)
r.option_error(OPT_INFO, info_data(export + "&x=1"), REP_ERR_UNKNOWN)
r.option_error(OPT_INFO, info_data(name_for(uuid, token) + "&session_id=" + token), REP_ERR_UNKNOWN)
r.close()
# A vm-admin (not pool-admin) may attach.
r = Raw(addr)
eq(r.info(name_for(uuid, cfg["vmadmin_token"]))["size"], 64 * MiB, "INFO with a vm-admin token")
eq(sorted(r.list_exports()), want_list(cfg["vmadmin_token"]), "LIST for the vm-admin session")
r.close()

# --- cbt_metadata VDIs cannot be exported ---
r = Raw(addr)
r.structured_reply()
for opt in (OPT_INFO, OPT_GO):
    msg = r.option_error(opt, info_data(name_for(cfg["cbtmeta"], token)), REP_ERR_UNKNOWN)
    check("cbt_metadata" in msg, "cbt_metadata refusal message %r", msg)
r.close()

# --- LIST: ERR_POLICY first; then after INFO or LIST_META_CONTEXT with a valid session ---
r = Raw(addr)
msg = r.option_error(OPT_LIST, b"", REP_ERR_POLICY)
check("session" in msg, "LIST refusal message %r", msg)
r.info(export)
eq(sorted(r.list_exports()), want_list(token), "LIST after INFO")
r.close()
r = Raw(addr)
r.structured_reply()
eq(r.meta(OPT_LIST_META_CONTEXT, export, []), [(0, "base:allocation")], "LIST_META_CONTEXT")
eq(sorted(r.list_exports()), want_list(token), "LIST after LIST_META_CONTEXT")
r.close()
# A session revoked after it was named stops LIST.
r = Raw(addr)
r.info(name_for(uuid, cfg["spare_token"]))
eq(len(r.list_exports()), len(cfg["vdis"]), "LIST with the spare session")
req = urllib.request.Request(cfg["api"] + "/token", method="DELETE",
                             headers={"Authorization": "Bearer " + cfg["spare_token"]})
eq(urllib.request.urlopen(req).status, 204, "logout")
r.option_error(OPT_LIST, b"", REP_ERR_POLICY)
r.option_error(OPT_INFO, info_data(name_for(uuid, cfg["spare_token"])), REP_ERR_UNKNOWN, MSG)
r.close()

# --- option errors; each option's data is consumed, so the next one parses ---
r = Raw(addr)
r.option_error(99, b"", REP_ERR_UNSUP)
r.option_error(99, b"x" * 1000, REP_ERR_UNSUP)
r.option_error(0x7fffffff, struct.pack(">QII", IHAVEOPT, OPT_ABORT, 0), REP_ERR_UNSUP)  # data that looks like an option
r.option_error(OPT_EXTENDED_HEADERS, b"", REP_ERR_UNSUP)
r.option_error(OPT_STARTTLS, b"", REP_ERR_POLICY)
r.option_error(OPT_STARTTLS, b"abc", REP_ERR_INVALID)
r.option_error(OPT_LIST, b"abcd", REP_ERR_INVALID)
r.option_error(OPT_SET_META_CONTEXT, meta_data(export, ["base:allocation"]), REP_ERR_INVALID)  # before SR
r.option_error(OPT_LIST_META_CONTEXT, meta_data(export, []), REP_ERR_INVALID)  # before SR
r.option_error(OPT_STRUCTURED_REPLY, b"zz", REP_ERR_INVALID)
r.option_ok(OPT_STRUCTURED_REPLY)
typ, _ = r.option(OPT_STRUCTURED_REPLY)[-1]
check(typ in (REP_ACK, REP_ERR_INVALID), "a second STRUCTURED_REPLY: %s", rname(typ))
r.option_error(OPT_EXTENDED_HEADERS, b"\x00" * 8, REP_ERR_UNSUP)
r.option_error(OPT_INFO, b"\x00\x00", REP_ERR_INVALID)                            # too short
r.option_error(OPT_INFO, struct.pack(">I", 100) + b"ab\x00\x00", REP_ERR_INVALID)  # name overruns
r.option_error(OPT_GO, info_data(export) + b"\x00", REP_ERR_INVALID)              # trailing byte
r.option_error(OPT_GO, info_data(export, [3])[:-1], REP_ERR_INVALID)              # short request list
r.option_error(OPT_SET_META_CONTEXT, meta_data(export, ["base:allocation"])[:-3], REP_ERR_INVALID)
r.option_error(OPT_LIST_META_CONTEXT, meta_data(export, []) + b"\x00", REP_ERR_INVALID)
r.option_error(OPT_LIST_META_CONTEXT, meta_data(export, ["q"] * 1000), REP_ERR_TOO_BIG)
# SET_META_CONTEXT selects exact names only, each once.
sel = r.meta(OPT_SET_META_CONTEXT, export, ["base:", "qemu:dirty-bitmap:", "base:allocation", "nope:x",
                                            "base:allocation", "qemu:", ""])
eq([n for _, n in sel], ["base:allocation"], "SET_META_CONTEXT with prefixes and unknown names")
eq(r.meta(OPT_SET_META_CONTEXT, export, []), [], "SET_META_CONTEXT with no queries")
eq(r.meta(OPT_SET_META_CONTEXT, export, ["base:"]), [], "SET_META_CONTEXT base:")
# LIST_META_CONTEXT: prefixes list, unknown namespaces are ignored.
eq([n for _, n in r.meta(OPT_LIST_META_CONTEXT, export, ["base:"])], ["base:allocation"], "LIST base:")
eq([n for _, n in r.meta(OPT_LIST_META_CONTEXT, export, ["base:allocation"])], ["base:allocation"], "LIST exact")
eq(r.meta(OPT_LIST_META_CONTEXT, export, ["qemu:dirty-bitmap:"]), [], "no bitmaps without CBT")
eq(r.meta(OPT_LIST_META_CONTEXT, export, ["nope:", "x"]), [], "LIST of unknown namespaces")
sel = r.meta(OPT_SET_META_CONTEXT, export, ["base:allocation"])
eq(len(sel), 1, "one context")
ctx_id = sel[0][0]
info = r.go(export, [INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE])
eq((info["name"], info["description"], info["flags"], info["block_size"]),
   (export, cfg["name"], TFLAGS_RW_SR, (512, 64 * KiB, 32 * MiB)), "GO replies")
rep = r.request(CMD_BLOCK_STATUS, 0, 64 * KiB, cookie=5)
eq(len(rep["chunks"]), 1, "BLOCK_STATUS chunks")
f, t, p = rep["chunks"][0]
eq((f, t), (1, CHUNK_BLOCK_STATUS), "BLOCK_STATUS chunk")
eq(struct.unpack(">I", p[:4])[0], ctx_id, "context id from SET_META_CONTEXT")
eq(struct.unpack(">IIII", p[4:]), (4096, 0, 60 * KiB, 3), "extents")
r.send_request(CMD_DISC)
r.expect_hangup()
r.close()

# --- contexts selected for another export do not carry over to GO; a GO
# without INFO_BLOCK_SIZE is not held to 512-byte alignment ---
r = Raw(addr)
r.structured_reply()
eq(len(r.meta(OPT_SET_META_CONTEXT, cfg["other_export"], ["base:allocation"])), 1, "SET for the other export")
info = r.go(export, [])
eq(info["flags"], TFLAGS_RW_SR, "GO without information requests")
r.expect_request_error(errno.EINVAL, CMD_BLOCK_STATUS, 0, 4096)
rep = r.request(CMD_READ, 1, 100, cookie=9)
eq(rep["error"], 0, "unaligned READ after a GO without INFO_BLOCK_SIZE")
data = b"".join(p[8:] for f, t, p in rep["chunks"] if t == CHUNK_OFFSET_DATA)
eq(data, b"\x01" * 100, "unaligned READ data")
r.close()

# --- INFO flags with and without structured replies ---
r = Raw(addr)
eq(r.info(export)["flags"], TFLAGS_RW, "INFO flags without structured replies")
r.structured_reply()
eq(r.info(export)["flags"], TFLAGS_RW_SR, "INFO flags with structured replies")
# ABORT: ACK, then the server closes.
eq(r.option(OPT_ABORT), [(REP_ACK, b"")], "ABORT")
r.expect_hangup()
r.close()

# --- client flags with unknown bits: the server closes ---
r = Raw(addr, client_flags=0x7)
r.expect_hangup()
r.close()
log("negotiate: ok")
