package kvolapi

import (
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Reference renders the kvol part of the API reference (docs/api.md).
func Reference() string {
	var b strings.Builder
	b.WriteString(`
# The kvol surface

Seed 001's cross-zone disaster-recovery API. A zone is a vdiskd daemon (` + "`--zone`" + `), a volume
type a vPool (its guid, which Cinder shows as the volume type id, or its name), a backup zone a
peer zone that a replication relation (` + "`/api/replications`" + `) ships a vPool's replicas to.

- Every call is a GET under ` + "`/api/kvol/`" + ` with the seed's hyphenated query parameters; any other
  parameter is refused. Answers are JSON.
- Authentication: Basic auth with a vdiskd user name and, as the password, a token of that user
  (` + "`POST /api/token`" + `); the seed's ` + "`gabianet`" + ` is just a user name. ` + "`Authorization: Bearer <token>`" + ` works too.
  Reads need read-only, create and recovery vm-admin.
- Statuses: 200; 204 (no body) when there is no data; 400 for a missing or bad parameter; 401 for
  a missing, wrong, expired or another user's token; 403 for a role too low; 500 for an internal
  error (the seed's 405). Errors are ` + "`{\"code\": 400, \"error\": \"INVALID_VALUE\", \"message\": \"...\"}`" + `.
- Any daemon answers list and show for any zone: the origin zone answers for its relations (asked
  over its REST API when it is a peer); when it does not answer, or is not a peer, the zones that
  do answer say which replicas of it they hold (status ` + "`broken`" + `, with a reason).
- Rows: ` + "`cluster_ip`" + ` is the backup daemon's API host, ` + "`svm_ip`" + ` its NBD host, ` + "`svm_name`" + ` its node name,
  ` + "`name`" + ` the vPool there; a path is an NBD URI (` + "`nbd://host:port/`" + `) that a VDI's uuid completes.
- create and recovery make the volume in the daemon asked: dst-zone must be its zone (the 400
  says which daemon to ask). The replica is looked up, by the origin tags its snapshots carry, in
  this zone and every peer that answers, never in the origin (for recovery it is down). A replica
  here in dst-volume-type-id is cloned (nothing copied); any other is copied, over NBD from the zone
  holding it. dst-tenant-id becomes the volume's Cinder project, bootable its Cinder bootable.
- Jobs (rowkey, never reused) persist; a job a stop cut runs again at the next start. Statuses
  PENDING, RUNNING, SUCCESS (result_msg "OK"), FAILED (result_msg says why; a half-made volume
  is removed). Times are UTC, ` + "`2006-01-02 15:04:05`" + `.

`)
	rpc.WriteReference(&b, Table)
	return b.String()
}
