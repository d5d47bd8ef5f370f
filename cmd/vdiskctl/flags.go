package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/vdiskd/vdiskd/internal/bytesize"
)

// bindFlag defines flag name on fs, writing straight into field (an
// addressable field of the call's argument struct).
func bindFlag(fs *pflag.FlagSet, name string, field reflect.Value, usage string) error {
	if field.Kind() == reflect.Bool && field.Type() != reflect.TypeFor[bool]() {
		// A named boolean with JSON rules of its own (Cinder's StrictBool)
		// is a plain flag here: true or false is all the CLI sends.
		fs.BoolVar((*bool)(field.Addr().UnsafePointer()), name, false, usage)
		return nil
	}
	switch p := field.Addr().Interface().(type) {
	case *string:
		fs.StringVar(p, name, "", usage)
	case *bool:
		fs.BoolVar(p, name, false, usage)
	case *int:
		fs.IntVar(p, name, 0, usage)
	case *int64:
		fs.Var((*sizeValue)(p), name, usage)
	case *float64:
		fs.Float64Var(p, name, 0, usage)
	case **string:
		fs.Var(&optString{p}, name, usage)
	case **bool:
		fs.VarPF(&optBool{p}, name, "", usage).NoOptDefVal = "true"
	case *map[string]string:
		fs.Var(&mapValue{p}, name, usage)
	case *[]string:
		fs.Var(&listValue{p}, name, usage)
	case **int64:
		fs.Var(&optInt{p}, name, usage)
	default:
		if !takesJSON(field.Type()) {
			return fmt.Errorf("flag --%s: vdiskctl cannot take an argument of type %s", name, field.Type())
		}
		fs.Var(&jsonValue{field}, name, usage)
	}
	return nil
}

// takesJSON reports whether an argument is a structure (or a list of
// them) that a flag takes as JSON text.
func takesJSON(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// optInt is a *int64 argument: nil until the flag is given, a plain
// integer (not a size).
type optInt struct{ p **int64 }

func (v *optInt) Type() string { return "int" }
func (v *optInt) String() string {
	if *v.p == nil {
		return ""
	}
	return strconv.FormatInt(**v.p, 10)
}
func (v *optInt) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*v.p = &n
	return nil
}

// jsonValue is a structured argument given as JSON text:
// --counters '{"cid_mid": {"cid": "vdisk.data_read"}}'.
type jsonValue struct{ v reflect.Value }

func (j *jsonValue) Type() string { return "json" }
func (j *jsonValue) String() string {
	if !j.v.IsValid() || j.v.IsZero() {
		return ""
	}
	b, _ := json.Marshal(j.v.Interface())
	return string(b)
}
func (j *jsonValue) Set(s string) error {
	p := reflect.New(j.v.Type())
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p.Interface()); err != nil {
		return fmt.Errorf("not the JSON this argument takes: %v", err)
	}
	j.v.Set(p.Elem())
	return nil
}

// flagUsage is an argument's doc plus how to write its value.
func flagUsage(name, doc string, t reflect.Type, required bool) string {
	u := doc
	add := func(s string) {
		if u == "" {
			u = s
		} else {
			u += " " + s
		}
	}
	switch t.Kind() {
	case reflect.Int64:
		add("(bytes, or with a K, M, G or T suffix: powers of 1024)")
	case reflect.Map:
		add("(key=value, repeatable; --" + name + "= for an empty map)")
	case reflect.Slice:
		if takesJSON(t) {
			add("(JSON)")
		} else {
			add("(repeatable; --" + name + "= for an empty set)")
		}
	case reflect.Pointer, reflect.Struct:
		if takesJSON(t) {
			add("(JSON)")
		}
	}
	if required {
		add("(required)")
	}
	return u
}

// sizeValue is an int64 byte count with optional unit suffix.
type sizeValue int64

func (v *sizeValue) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *sizeValue) Type() string   { return "size" }
func (v *sizeValue) Set(s string) error {
	n, err := bytesize.Parse(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

// optString is a *string argument: nil until the flag is given.
type optString struct{ p **string }

func (v *optString) Type() string { return "string" }
func (v *optString) String() string {
	if *v.p == nil {
		return ""
	}
	return **v.p
}
func (v *optString) Set(s string) error { *v.p = &s; return nil }

// optBool is a *bool argument: nil until the flag is given.
type optBool struct{ p **bool }

func (v *optBool) Type() string { return "bool" }
func (v *optBool) String() string {
	if *v.p == nil {
		return ""
	}
	return strconv.FormatBool(**v.p)
}
func (v *optBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v.p = &b
	return nil
}

// mapValue is a (string -> string) map, one key=value per use of the flag.
// An empty value ("--other-config=") gives an empty map.
type mapValue struct{ p *map[string]string }

func (v *mapValue) Type() string { return "key=value" }
func (v *mapValue) String() string {
	if len(*v.p) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*v.p)) {
		parts = append(parts, k+"="+(*v.p)[k])
	}
	return strings.Join(parts, ",")
}
func (v *mapValue) Set(s string) error {
	if *v.p == nil {
		*v.p = map[string]string{}
	}
	if s == "" {
		return nil
	}
	k, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want key=value", s)
	}
	if _, dup := (*v.p)[k]; dup {
		return fmt.Errorf("key %q given twice", k)
	}
	(*v.p)[k] = val
	return nil
}

// listValue is a string set, one member per use of the flag (no comma
// splitting: a tag may hold a comma). An empty value gives an empty set.
type listValue struct{ p *[]string }

func (v *listValue) Type() string   { return "string" }
func (v *listValue) String() string { return strings.Join(*v.p, ",") }
func (v *listValue) Set(s string) error {
	if *v.p == nil {
		*v.p = []string{}
	}
	if s != "" {
		*v.p = append(*v.p, s)
	}
	return nil
}

// queryValues writes an argument for a URL query.
func queryValues(v reflect.Value) []string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return queryValues(v.Elem())
	case reflect.String:
		return []string{v.String()}
	case reflect.Bool:
		return []string{strconv.FormatBool(v.Bool())}
	case reflect.Int, reflect.Int64:
		return []string{strconv.FormatInt(v.Int(), 10)}
	case reflect.Float64:
		return []string{strconv.FormatFloat(v.Float(), 'g', -1, 64)}
	case reflect.Slice:
		var out []string
		for i := 0; i < v.Len(); i++ {
			out = append(out, queryValues(v.Index(i))...)
		}
		return out
	case reflect.Map:
		m, _ := v.Interface().(map[string]string)
		var out []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out = append(out, k+"="+m[k])
		}
		return out
	}
	return []string{fmt.Sprint(v.Interface())}
}
