package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// MaxBodySize bounds a request body; larger ones get 413.
const MaxBodySize = 1 << 20

// DecodeArgs fills the argument struct of rpc from the request: path
// variables, query parameters and the JSON body, as the struct's tags say.
// Anything it does not expect is an error, so a typo never passes silently.
// It is the default Surface.Decode.
func DecodeArgs(r *http.Request, rpc *RPC, dst any) error {
	if err := decodeArgs(r, rpc, dst); err != nil {
		return err
	}
	return nil
}

func decodeArgs(r *http.Request, rpc *RPC, dst any) *fault.Error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if rpc.Envelope != "" {
		if body, err = unwrap(body, rpc); err != nil {
			return err
		}
	}
	return fill(rpc, dst, mux.Vars(r), r.URL.Query(), body)
}

// FillArgs fills dst, the argument struct of rpc, from path variables and
// a body's members, with DecodeArgs' checks (unknown members, required
// ones, types) and then Validate. A surface whose calls are not REST
// requests (XenAPI's positional parameters) decodes through it, so the
// same call meets the same rules on every surface.
func FillArgs(rpc *RPC, dst any, vars map[string]string, body map[string]json.RawMessage) error {
	if err := fill(rpc, dst, vars, nil, body); err != nil {
		return err
	}
	return nil
}

func fill(rpc *RPC, dst any, vars map[string]string, query url.Values, body map[string]json.RawMessage) *fault.Error {
	v := reflect.ValueOf(dst).Elem()
	args := rpc.Arguments()
	inBody := map[string]bool{}
	for _, a := range args {
		if a.Source == FromBody || a.Source == FromQuery {
			inBody[a.Name] = true
		}
	}
	for name := range body {
		if !inBody[name] {
			return fault.BadRequest(fault.CodeUnknownField, []string{name}, "unknown field %q for %s", name, rpc.Name())
		}
	}
	for name := range query {
		if !inBody[name] || bodyOnly(args, name) {
			return fault.BadRequest(fault.CodeUnknownField, []string{name}, "unknown query parameter %q for %s", name, rpc.Name())
		}
	}
	for _, a := range args {
		f := v.FieldByIndex(a.Index)
		switch a.Source {
		case FromPath:
			f.SetString(vars[a.Name])
			continue
		case FromQuery:
			vals, ok := query[a.Name]
			if ok && f.Kind() == reflect.Slice {
				// A list: the parameter repeated, or comma-separated.
				for _, v := range vals {
					for _, item := range strings.Split(v, ",") {
						e := reflect.New(f.Type().Elem()).Elem()
						if err := setFromString(e, a.Name, item); err != nil {
							return err
						}
						f.Set(reflect.Append(f, e))
					}
				}
				continue
			}
			if ok {
				if len(vals) != 1 {
					return fault.InvalidValue(a.Name, "", "given %d times", len(vals))
				}
				if err := setFromString(f, a.Name, vals[0]); err != nil {
					return err
				}
				if a.Required && vals[0] == "" {
					return fault.InvalidValue(a.Name, "", "must not be empty")
				}
				continue
			}
			// A body may carry query arguments too (POST list_changed_blocks).
		}
		raw, ok := body[a.Name]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if a.Required {
				return fault.BadRequest(fault.CodeInvalidValue, []string{a.Name, ""}, "%s is required", a.Name)
			}
			continue
		}
		if err := json.Unmarshal(raw, f.Addr().Interface()); err != nil {
			return fault.BadRequest(fault.CodeFieldTypeError, []string{a.Name},
				"%s: expected %s: %v", a.Name, TypeName(a.Type), jsonReason(err))
		}
	}
	if val, ok := dst.(Validator); ok {
		if err := val.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// unwrap returns the arguments inside a body's envelope member, a JSON
// object. Beside it a body may carry only OpenStack extension members
// ("OS-SCH-HNT:scheduler_hints": a name with a colon), which are ignored as
// Cinder ignores what it does not implement. No body at all is no
// arguments (a delete without options).
func unwrap(body map[string]json.RawMessage, rpc *RPC) (map[string]json.RawMessage, *fault.Error) {
	if len(body) == 0 {
		return body, nil
	}
	raw, ok := body[rpc.Envelope]
	if !ok {
		return nil, fault.BadRequest(fault.CodeInvalidValue, []string{rpc.Envelope, ""},
			"Missing required element '%s' in request body.", rpc.Envelope)
	}
	for name := range body {
		if name != rpc.Envelope && !strings.Contains(name, ":") {
			return nil, fault.BadRequest(fault.CodeUnknownField, []string{name},
				"unknown member %q beside %q in the body of %s", name, rpc.Envelope, rpc.Name())
		}
	}
	inner := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &inner); err != nil || inner == nil {
		return nil, fault.BadRequest(fault.CodeFieldTypeError, []string{rpc.Envelope},
			"%s: expected a JSON object", rpc.Envelope)
	}
	return inner, nil
}

// readBody reads a JSON object body (empty means {}), refusing more than
// MaxBodySize with 413.
func readBody(r *http.Request) (map[string]json.RawMessage, *fault.Error) {
	if r.Body == nil {
		return map[string]json.RawMessage{}, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		return nil, fault.BadRequest(fault.CodeInvalidJSON, nil, "reading the body: %v", err)
	}
	if len(buf) > MaxBodySize {
		return nil, fault.New(fault.TooLarge, fault.CodeRequestTooLarge,
			[]string{strconv.Itoa(MaxBodySize)}, "request body larger than %d bytes", MaxBodySize)
	}
	body := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(buf)) == 0 {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	if err := dec.Decode(&body); err != nil {
		return nil, fault.BadRequest(fault.CodeInvalidJSON, nil, "the body must be a JSON object: %v", jsonReason(err))
	}
	if body == nil {
		body = map[string]json.RawMessage{} // null: no arguments, as an empty body
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fault.BadRequest(fault.CodeInvalidJSON, nil, "unexpected data after the JSON object")
	}
	return body, nil
}

func setFromString(f reflect.Value, name, s string) *fault.Error {
	switch f.Kind() {
	case reflect.Pointer: // optional: absent is nil
		v := reflect.New(f.Type().Elem())
		if err := setFromString(v.Elem(), name, s); err != nil {
			return err
		}
		f.Set(v)
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fault.BadRequest(fault.CodeFieldTypeError, []string{name}, "%s: expected an integer, got %q", name, s)
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fault.BadRequest(fault.CodeFieldTypeError, []string{name}, "%s: expected true or false, got %q", name, s)
		}
		f.SetBool(b)
	default:
		panic(fmt.Sprintf("rpc: query argument %s of type %s", name, f.Type()))
	}
	return nil
}

// jsonReason shortens encoding/json's errors to what a caller can act on.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "got a JSON " + te.Value
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of JSON"
	}
	return err.Error()
}

// bodyOnly reports whether name is an argument that only a body carries.
func bodyOnly(args []Arg, name string) bool {
	for _, a := range args {
		if a.Name == name {
			return a.Source == FromBody
		}
	}
	return false
}
