"""XenAPI.py (the classic XML-RPC client) against vdiskd: login, the pool,
host, SR and VDI records, CBT snapshots and list_changed_blocks,
get_nbd_info, a Failure, logout. Prints one JSON line of what it saw.

usage: python3 backup.py URL USER PASSWORD VDI_UUID
"""
import base64
import json
import sys

import XenAPI

url, user, password, uuid = sys.argv[1:5]
s = XenAPI.Session(url)
s.xenapi.login_with_password(user, password, "1.0", "vdiskd-systest")
out = {}
pool = s.xenapi.pool.get_all()[0]
host = s.xenapi.pool.get_master(pool)
out["api"] = [s.xenapi.host.get_API_version_major(host), s.xenapi.host.get_API_version_minor(host)]
vdi = s.xenapi.VDI.get_by_uuid(uuid)
rec = s.xenapi.VDI.get_record(vdi)
out["name_label"] = rec["name_label"]
out["virtual_size"] = rec["virtual_size"]
out["sr_name"] = s.xenapi.SR.get_name_label(rec["SR"])
s.xenapi.VDI.enable_cbt(vdi)
base = s.xenapi.VDI.snapshot(vdi, {})
out["base"] = base
out["nbd"] = s.xenapi.VDI.get_nbd_info(vdi)
print(json.dumps({"ready": base}), flush=True)
sys.stdin.readline()  # the test writes through NBD meanwhile
nxt = s.xenapi.VDI.snapshot(vdi, {})
bitmap = base64.b64decode(s.xenapi.VDI.list_changed_blocks(base, nxt))
out["changed"] = [i for i in range(len(bitmap) * 8) if bitmap[i // 8] & (0x80 >> (i % 8))]
try:
    s.xenapi.VDI.get_record("OpaqueRef:nonsense")
except XenAPI.Failure as f:
    out["failure"] = f.details
s.xenapi.VDI.destroy(nxt)
s.xenapi.VDI.destroy(base)
s.xenapi.session.logout()
print(json.dumps(out), flush=True)
