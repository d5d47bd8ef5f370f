package api

import (
	"fmt"
	"net/http"
	"strings"
)

// Reference renders the API reference (docs/api.md) from the table.
func Reference() string {
	var b strings.Builder
	b.WriteString(`# vdiskd REST API reference

Generated from the RPC table in mgmt/api by ` + "`go test ./mgmt/api -run TestReference -update`" + `;
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
	classes := []string{}
	byClass := map[string][]*RPC{}
	for _, r := range All() {
		if byClass[r.Class] == nil {
			classes = append(classes, r.Class)
		}
		byClass[r.Class] = append(byClass[r.Class], r)
	}
	b.WriteString("## Calls\n\n| call | method | path | minimum role | success |\n|---|---|---|---|---|\n")
	for _, c := range classes {
		for _, r := range byClass[c] {
			fmt.Fprintf(&b, "| [%s](#%s) | %s | `%s` | %s | %d |\n", r.Name(), anchor(r.Name()),
				strings.Join(r.Methods, ", "), r.Path, r.Role, r.Status)
		}
	}
	for _, c := range classes {
		fmt.Fprintf(&b, "\n## %s\n", c)
		for _, r := range byClass[c] {
			fmt.Fprintf(&b, "\n### %s\n\n`%s %s` · minimum role **%s** · answers %d %s\n\n%s\n",
				r.Name(), r.Method(), r.Path, r.Role, r.Status, http.StatusText(r.Status), r.Summary)
			if r.Auth == AuthPassword {
				b.WriteString("\nAuthenticates with Basic user:password.\n")
			}
			if len(r.Methods) > 1 {
				fmt.Fprintf(&b, "\nAlso answers %s.\n", strings.Join(r.Methods[1:], ", "))
			}
			if len(r.XenAPI) > 0 {
				fmt.Fprintf(&b, "\nXenAPI: %s.\n", strings.Join(r.XenAPI, ", "))
			}
			if args := r.Arguments(); len(args) > 0 {
				b.WriteString("\n| argument | in | type | required | description |\n|---|---|---|---|---|\n")
				for _, a := range args {
					req := ""
					if a.Required {
						req = "yes"
					}
					fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", a.Name, a.Source, TypeName(a.Type), req, a.Doc)
				}
			}
			fmt.Fprintf(&b, "\nReturns %s.\n", r.Returns)
		}
	}
	return b.String()
}

func anchor(name string) string {
	return strings.ToLower(strings.NewReplacer(".", "", "_", "_").Replace(name))
}
