package api

import (
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Reference renders the XenAPI REST part of the API reference
// (docs/api.md) from the table.
func Reference() string {
	var b strings.Builder
	b.WriteString(`# vdiskd REST API reference

Generated from the RPC tables in mgmt/api and mgmt/cinder/cinderapi by ` + "`go test ./mgmt -run TestReference -update`" + `;
a test fails when this file and the table disagree. Do not edit by hand.

Conventions (SPEC §5):

- JSON in and out. A request body is a JSON object of the call's body arguments; unknown
  members, wrong types and bodies over 1 MiB are refused (400 / 413) and change nothing.
- Authentication: ` + "`POST /api/token`" + ` (or GET) with Basic user:password returns
  ` + "`{token, expires_at, role, username}`" + `; every other call carries
  ` + "`Authorization: Bearer <token>`" + ` or Basic user:token. 401 without valid credentials,
  403 when the caller's role is below the call's minimum role.
- Roles, ascending: read-only, vm-operator, vm-admin, vm-power-admin, pool-operator, pool-admin.
- Errors: ` + "`{\"error\":{\"code\":\"VDI_READONLY\",\"params\":[\"<uuid>\"],\"message\":\"...\"}}`" + `,
  with XenAPI's error codes where XenAPI has one.
- Lists answer ` + "`{\"data\":[...],\"_paging\":{total_items,current_page,max_page,start_number,end_number}}`" + `
  and take ` + "`page`, `page_size` and `sort=field,-field`" + `.
- Calls that answer 202 run as tasks: poll ` + "`GET /api/tasks/{uuid}`" + `.

`)
	rpc.WriteReference(&b, Table)
	return b.String()
}
