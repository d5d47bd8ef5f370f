package api

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
)

// RPC declares one call of the API. Its argument struct says where each
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
	Class   string   // "VDI", "vPool", "task", "user", "session"
	Call    string   // the call's name, XenAPI's where it has one: "snapshot"
	Methods []string // HTTP methods; the first is canonical
	Path    string   // gorilla/mux pattern
	Role    Role     // minimum role (XenAPI's "Minimum Role")
	Auth    AuthKind // how the caller proves who they are
	XenAPI  []string // XenAPI messages of the class this call implements
	Summary string
	Returns string // what a success carries
	Status  int    // HTTP status of a success
	Args    reflect.Type
}

// AuthKind says which credentials a call takes.
type AuthKind int

const (
	// AuthToken: "Authorization: Bearer <token>" or Basic user:token.
	AuthToken AuthKind = iota
	// AuthPassword: Basic user:password (only to obtain a token).
	AuthPassword
)

// Name is the call's unique name, "Class.call".
func (r *RPC) Name() string { return r.Class + "." + r.Call }

// Method is the canonical HTTP method.
func (r *RPC) Method() string { return r.Methods[0] }

// Decl is an RPC whose argument struct is A, so binding a handler to it is
// type-checked.
type Decl[A any] struct{ RPC }

var table []*RPC

// declare adds a call to the table.
func declare[A any](r RPC) *Decl[A] {
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
	table = append(table, &d.RPC)
	return d
}

// All returns every declared call, in declaration order.
func All() []*RPC { return append([]*RPC(nil), table...) }

// Lookup finds a call by Name.
func Lookup(name string) *RPC {
	for _, r := range table {
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
// types. The server calls it after decoding and before the handler; the
// CLI calls it before sending.
type Validator interface {
	Validate() *Error
}
