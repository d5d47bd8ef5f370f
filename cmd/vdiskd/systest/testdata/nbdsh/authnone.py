# --nbd-auth none: a bare "<uuid>" (or "/<uuid>") is an export name, any
# session_id is ignored, and LIST shows every VDI as "/<uuid>" at once.
# Argument (JSON): addr, host (for URIs), uuid (a writable VDI), vdis
# {uuid: name_label}, cbtmeta, unknown.

from common import *

cfg = config()
addr, uuid = cfg["addr"], cfg["uuid"]

for name in (uuid, "/" + uuid, "/" + uuid + "?session_id=whatever"):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_tcp(*addr.rsplit(":", 1))
    h.pwrite(b"\x31" * 4096, 0)
    eq(h.pread(4096, 0), b"\x31" * 4096, "read through %r" % name)
    h.shutdown()
h = connect("nbd://%s/%s" % (addr, uuid))  # the path of an nbd:// URI is the export name
eq(h.pread(4096, 0), b"\x31" * 4096, "read through a URI")
h.shutdown()

r = Raw(addr)
eq(sorted(r.list_exports()), sorted(("/" + u, label) for u, label in cfg["vdis"].items()), "LIST")
r.option_error(OPT_INFO, info_data(cfg["unknown"]), REP_ERR_UNKNOWN)
r.option_error(OPT_INFO, info_data("/" + cfg["unknown"]), REP_ERR_UNKNOWN)
msg = r.option_error(OPT_INFO, info_data(cfg["cbtmeta"]), REP_ERR_UNKNOWN)
check("cbt_metadata" in msg, "cbt_metadata message %r", msg)
eq(r.info(uuid)["flags"], TFLAGS_RW, "INFO of a bare uuid")
r.close()
log("authnone: ok")
