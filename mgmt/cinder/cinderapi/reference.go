package cinderapi

import (
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Reference renders the Cinder part of the API reference (docs/api.md).
func Reference() string {
	var b strings.Builder
	b.WriteString(`
# The Cinder surface

OpenStack Cinder's v2 consistency-group API (and just enough volumes, snapshots and volume types
to use it), for Cinder's own clients: ` + "`cinder`" + ` (python-cinderclient), openstackclient.
A volume is a VDI (the same one the XenAPI surface shows), a volume type a vPool.

- Every call answers under ` + "`/v2/{tenant_id}`" + ` and ` + "`/v3/{tenant_id}`" + ` (today's clients speak v3 to
  either); ` + "`GET /`" + ` answers Cinder's version document (300), ` + "`GET /v2/`" + ` and ` + "`GET /v3/`" + ` one version.
- Authentication: ` + "`X-Auth-Token: <vdiskd token>`" + ` (POST /api/token gives one). With
  ` + "`vdiskd --cinder-auth noauth`" + `, also Cinder's noauth tokens ` + "`user:project`" + `, whose holder is,
  as in Cinder's noauth, an administrator of every project (the path must name the token's
  project); for test clouds only. Reads need read-only, changes vm-admin; ` + "`all_tenants=1`" + ` lists every
  project's for a pool-admin and is ignored for others, as Cinder does.
- Tenancy: groups, cgsnapshots, volumes and snapshots belong to the project in the path they were
  made through, and calls through another project's path neither see nor touch them. vdiskd users
  are not bound to projects: the caller names the project, as with Cinder's noauth, so projects
  keep tenants' objects apart but are not a security boundary between vdiskd users (the XenAPI
  surface shows every VDI to every user anyway). A VDI made through another surface is in the
  project of the VDI it was snapshotted or cloned from, else in ` + "`default`" + `.
- Bodies are wrapped in the call's envelope (` + "`{\"consistencygroup\": {...}}`" + `); changes answer 202.
- Errors are Cinder's fault bodies: ` + "`{\"badRequest\": {\"code\": 400, \"message\": \"...\"}}`" + `,
  ` + "`itemNotFound`" + ` 404, ` + "`forbidden`" + ` 403; 401 is ` + "`{\"error\": {...}}`" + ` as keystonemiddleware's.
- Lists take ` + "`limit`" + ` (default and maximum 1000), ` + "`marker`" + `, ` + "`offset`" + `, ` + "`sort_key`" + `/` + "`sort_dir`" + ` or
  ` + "`sort=key:dir,...`" + ` (default created_at desc) and field filters; a full page carries a ` + "`next`" + ` link.
- Every group call is one durable commit: a cgsnapshot holds every write acknowledged before it, on
  every member, at one point in time; after a crash each call happened wholly or not at all.

`)
	rpc.WriteReference(&b, Table)
	return b.String()
}
