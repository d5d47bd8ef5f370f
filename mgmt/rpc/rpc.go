package rpc

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// RPC declares one call of a surface. Its argument struct says where each
// argument comes from, with struct tags:
//
//	path:"uuid"        a variable of Path
//	query:"name"       a URL query parameter (GET and DELETE calls)
//	json:"name"        a member of the JSON body (other calls)
//	required:"true"    the argument must be given; a zero value counts as given
//	doc:"..."          one line for the reference and the CLI's --help
//
// Anonymous struct fields are flattened.
type RPC struct {
	Class   string    // "VDI", "vPool", "task", "user", "session", "consistencygroup", ...
	Call    string    // the call's name, XenAPI's where it has one: "snapshot"
	Methods []string  // HTTP methods; the first is canonical
	Path    string    // gorilla/mux pattern
	Role    auth.Role // minimum role (XenAPI's "Minimum Role")
	Auth    AuthKind  // how the caller proves who they are
	XenAPI  []string  // XenAPI messages of the class this call implements
	Summary string
	Returns string // what a success carries
	Status  int    // HTTP status of a success
	// Envelope, if set, is the one member a body's arguments are wrapped
	// in (Cinder's {"consistencygroup": {...}}).
	Envelope string
	Args     reflect.Type
}

// AuthKind says which credentials a call takes.
type AuthKind int

const (
	// AuthToken: the surface's session credential (XenAPI REST: Bearer
	// <token> or Basic user:token; Cinder: X-Auth-Token; vStats:
	// vmware-api-session-id).
	AuthToken AuthKind = iota
	// AuthPassword: user and password (only to obtain a session, except on
	// surfaces that authenticate every call so, as kvol's Basic auth).
	AuthPassword
	// AuthNone: anyone (a version document).
	AuthNone
)

// Name is the call's unique name, "Class.call".
func (r *RPC) Name() string { return r.Class + "." + r.Call }

// Method is the canonical HTTP method.
func (r *RPC) Method() string { return r.Methods[0] }

// Decl is an RPC whose argument struct is A, so binding a handler to it is
// type-checked.
type Decl[A any] struct{ RPC }

// Table is one surface's calls, in declaration order.
type Table struct {
	Surface string // its name, for messages
	calls   []*RPC
}

// NewTable starts a surface's table.
func NewTable(surface string) *Table { return &Table{Surface: surface} }

// Declare adds a call to t.
func Declare[A any](t *Table, r RPC) *Decl[A] {
	r.Args = reflect.TypeFor[A]()
	if r.Args.Kind() != reflect.Struct {
		panic(fmt.Sprintf("api: %s: arguments must be a struct", r.Name()))
	}
	if len(r.Methods) == 0 {
		r.Methods = []string{http.MethodPost}
	}
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	d := &Decl[A]{r}
	t.calls = append(t.calls, &d.RPC)
	return d
}

// All returns every declared call, in declaration order.
func (t *Table) All() []*RPC { return append([]*RPC(nil), t.calls...) }

// Lookup finds a call by Name.
func (t *Table) Lookup(name string) *RPC {
	for _, r := range t.calls {
		if r.Name() == name {
			return r
		}
	}
	return nil
}

// Source says where an argument comes from.
type Source int

// Argument sources.
const (
	FromBody Source = iota
	FromPath
	FromQuery
)

func (s Source) String() string { return [...]string{"body", "path", "query"}[s] }

// Arg describes one argument of a call.
type Arg struct {
	Name     string
	Source   Source
	Required bool
	Doc      string
	Type     reflect.Type
	Index    []int // for reflect.Value.FieldByIndex
}

// Arguments lists a call's arguments in struct order.
func (r *RPC) Arguments() []Arg { return arguments(r.Args, nil) }

func arguments(t reflect.Type, index []int) []Arg {
	var out []Arg
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		idx := append(append([]int(nil), index...), i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, arguments(f.Type, idx)...)
			continue
		}
		a := Arg{Doc: f.Tag.Get("doc"), Type: f.Type, Index: idx, Required: f.Tag.Get("required") == "true"}
		switch {
		case f.Tag.Get("path") != "":
			a.Name, a.Source, a.Required = f.Tag.Get("path"), FromPath, true
		case f.Tag.Get("query") != "":
			a.Name, a.Source = f.Tag.Get("query"), FromQuery
		default:
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			a.Name, a.Source = name, FromBody
		}
		out = append(out, a)
	}
	return out
}

// TypeName is an argument type as the reference shows it.
func TypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Float64:
		return "float"
	case reflect.Map:
		return "(string -> string) map"
	case reflect.Slice:
		return "string set"
	case reflect.Pointer:
		return TypeName(t.Elem())
	}
	return t.String()
}

// Validator is implemented by argument structs with rules beyond their
// types. The mechanism calls it after decoding and before the handler; the
// CLI calls it before sending.
type Validator interface {
	Validate() *fault.Error
}
