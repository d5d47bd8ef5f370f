package vstatsapi

import (
	"fmt"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/stats"
)

// Reference renders the vStats part of the API reference (docs/api.md):
// the conventions, the counters with their units and meaning, the calls.
func Reference(counters []stats.Counter) string {
	var b strings.Builder
	b.WriteString(`
# The vStats surface

VMware's vStats model (seed 004 and its siblings) over vdiskd's own counters: a monitoring
client says which counters to sample on which vDisks, vPools or this daemon, how often and until
when (an acquisition spec); vdiskd samples them and keeps the data points; clients keep a cache
of the specs in sync with ` + "`GET /api/stats/cache/sync`" + `.

- Sessions as vSphere's Automation API: ` + "`POST /api/session`" + ` with Basic user:password answers the
  session id (a vdiskd token, 201); send it as ` + "`vmware-api-session-id`" + ` (or as ` + "`Authorization: Bearer`" + `);
  ` + "`DELETE /api/session`" + ` ends it. Reads need read-only, spec changes vm-admin.
- Errors are vSphere's: ` + "`{\"error_type\": \"INVALID_ARGUMENT\", \"messages\": [{\"id\", \"default_message\", \"args\"}]}`" + `
  with 400 (the message names the field), 401 UNAUTHENTICATED, 403 UNAUTHORIZED, 404 NOT_FOUND, 500 ERROR.
- Resources: ` + "`VDISK`" + ` (a VDI's uuid), ` + "`VPOOL`" + ` (a vPool's guid), ` + "`NODE`" + ` (this daemon's guid), as
  ` + "`{\"type\", \"id_value\", \"predicate\": \"EQUAL\"}`" + ` or ` + "`\"predicate\": \"ALL\"`" + ` (every one of the type, new ones
  included); in data-point filters and ids, ` + "`type.VDISK=<uuid>`" + `.
- Specs: interval 1 to 3600 s (default 10); expiration in Unix seconds (0 or none: now + 100
  minutes; at most a year ahead); ` + "`memo_`" + `; ` + "`endpoints`" + ` must be empty (vdiskd pushes nowhere). Status
  ENABLED, DISABLED (every resource it names is gone), EXPIRED (its expiration passed; nothing is
  sampled after). A PATCH changes only the fields it gives and enables the spec again.
- Data points are sampled per spec at its interval, stored durably for ` + "`vdiskd --stats-retention`" + `
  (default 24 h); each resource is read once per tick however many specs name it.
- Cache sync: ` + "`start_epoch=0`" + ` is a full sync (every spec in created); otherwise the specs created,
  updated and deleted in ` + "`(start_epoch, end_epoch]`" + ` (end default now, at most 60 s past this
  server's clock). A change made after a sync answered is stamped after its end, so a client that
  syncs from each answer's ` + "`end_epoch`" + ` misses nothing. Deletions are remembered for
  ` + "`vdiskd --stats-tombstones`" + ` (default 7 days); an older start_epoch is a 400 asking for a full sync.
- Pages: ` + "`next`" + ` is an opaque token; pass it as ` + "`page`" + `.

## Counters

| cid | type | units | what it measures |
|---|---|---|---|
`)
	for _, c := range counters {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", c.Cid, c.Sample, c.Units, c.Doc)
	}
	b.WriteString("\n")
	rpc.WriteReference(&b, Table)
	return b.String()
}
