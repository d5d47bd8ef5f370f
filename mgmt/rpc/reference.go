package rpc

import (
	"fmt"
	"net/http"
	"strings"
)

// WriteReference renders a table's calls for the API reference: a summary
// table, then a section per class with each call's route, role, status,
// arguments and answer.
func WriteReference(b *strings.Builder, t *Table) {
	classes := []string{}
	byClass := map[string][]*RPC{}
	for _, r := range t.All() {
		if byClass[r.Class] == nil {
			classes = append(classes, r.Class)
		}
		byClass[r.Class] = append(byClass[r.Class], r)
	}
	fmt.Fprintf(b, "## %s calls\n\n| call | method | path | minimum role | success |\n|---|---|---|---|---|\n", t.Surface)
	for _, c := range classes {
		for _, r := range byClass[c] {
			role := r.Role.String()
			if r.Auth == AuthNone {
				role = "none"
			}
			fmt.Fprintf(b, "| [%s](#%s) | %s | `%s` | %s | %d |\n", r.Name(), anchor(t.Surface, r.Name()),
				strings.Join(r.Methods, ", "), r.Path, role, r.Status)
		}
	}
	for _, c := range classes {
		fmt.Fprintf(b, "\n## %s: %s\n", t.Surface, c)
		for _, r := range byClass[c] {
			role := "minimum role **" + r.Role.String() + "**"
			if r.Auth == AuthNone {
				role = "no authentication"
			}
			fmt.Fprintf(b, "\n<a id=\"%s\"></a>\n### %s\n\n`%s %s` · %s · answers %d %s\n\n%s\n",
				anchor(t.Surface, r.Name()), r.Name(), r.Method(), r.Path, role, r.Status, http.StatusText(r.Status), r.Summary)
			if r.Auth == AuthPassword {
				b.WriteString("\nAuthenticates with Basic user:password.\n")
			}
			if len(r.Methods) > 1 {
				fmt.Fprintf(b, "\nAlso answers %s.\n", strings.Join(r.Methods[1:], ", "))
			}
			if len(r.XenAPI) > 0 {
				fmt.Fprintf(b, "\nXenAPI: %s.\n", strings.Join(r.XenAPI, ", "))
			}
			if r.Envelope != "" {
				fmt.Fprintf(b, "\nThe body's arguments are wrapped in `{\"%s\": {...}}`.\n", r.Envelope)
			}
			if args := r.Arguments(); len(args) > 0 {
				b.WriteString("\n| argument | in | type | required | description |\n|---|---|---|---|---|\n")
				for _, a := range args {
					req := ""
					if a.Required {
						req = "yes"
					}
					fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", a.Name, a.Source, TypeName(a.Type), req, a.Doc)
				}
			}
			fmt.Fprintf(b, "\nReturns %s.\n", r.Returns)
		}
	}
}

// anchor is a call's link target, unique across surfaces.
func anchor(surface, name string) string {
	r := strings.NewReplacer(".", "-", "_", "_", " ", "-")
	return strings.ToLower(r.Replace(surface) + "-" + r.Replace(name))
}
