package xenapi

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Reference renders the XenAPI wire part of the API reference
// (docs/api.md): the transports and every message.
func Reference() string {
	var b strings.Builder
	b.WriteString(`
# XenAPI's wire protocol

xapi's own protocol, for XenAPI clients as they are: JSON-RPC 2.0 at ` + "`POST /jsonrpc`" + ` (answers
Content-Type exactly ` + "`application/json`" + `; errors carry the XenAPI code as ` + "`message`" + ` and its
parameters as ` + "`data`" + `), XML-RPC at ` + "`POST /`" + ` and ` + "`POST /xmlrpc`" + ` (` + "`{Status: Success, Value}`" + ` or
` + "`{Status: Failure, ErrorDescription: [code, params...]}`" + `, always HTTP 200). The same listener as REST.

- Sessions: ` + "`session.login_with_password(user, password[, version, originator])`" + ` answers a session ref,
  ` + "`OpaqueRef:<a vdiskd token>`" + `: an NBD export name carrying it (` + "`/<uuid>?session_id=OpaqueRef:...`" + `)
  is accepted like the token, and ` + "`session.logout`" + ` ends the NBD connections opened with it.
- Handles are ` + "`OpaqueRef:<uuid>`" + ` of the object. This daemon is a one-host pool.
- Errors as xapi names them: SESSION_AUTHENTICATION_FAILED, SESSION_INVALID, HANDLE_INVALID,
  MESSAGE_METHOD_UNKNOWN, MESSAGE_PARAMETER_COUNT_MISMATCH, FIELD_TYPE_ERROR, RBAC_PERMISSION_DENIED,
  XMLRPC_UNMARSHAL_FAILURE / JSONRPC_UNMARSHAL_FAILURE for a request that is no call.

## XenAPI messages

Every message with a session but the reads (get_*) and the session's, task's and event's own also answers as
` + "`Async.<Class>.<message>`" + `: a task ref at once; the task's result, when it ends, is the answer as
XML-RPC value text (over JSON-RPC too), as xapi's.

| message | parameters (after the session) | minimum role | what it does |
|---|---|---|---|
`)
	for _, name := range slices.Sorted(maps.Keys(messages)) {
		m := messages[name]
		params := strings.Join(m.Params, ", ")
		if m.NoSession {
			params += " (no session)"
		}
		role := m.Role.String()
		if m.NoSession {
			role = "none"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, params, role, m.Summary)
	}
	b.WriteString("\n")
	rpc.WriteReference(&b, Table)
	return b.String()
}
