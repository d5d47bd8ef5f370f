package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is XML-RPC's dateTime.iso8601 as xapi writes it.
const TimeLayout = "20060102T15:04:05Z"

// DecodeXMLRPC reads a methodCall. Go's XML decoder expands no entities
// but the five predefined ones, so an entity bomb is only bytes, bounded
// by MaxBody.
func DecodeXMLRPC(r io.Reader) (Call, error) {
	body, err := readBody(r)
	if err != nil {
		return Call{}, err
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	x := &xmlDecoder{d: d}
	if err := x.open("methodCall"); err != nil {
		return Call{}, err
	}
	if err := x.open("methodName"); err != nil {
		return Call{}, err
	}
	name, err := x.text("methodName")
	if err != nil {
		return Call{}, err
	}
	c := Call{Method: strings.TrimSpace(name), Params: []any{}}
	// <params> is optional; so is every <param>.
	tok, err := x.next()
	if err != nil {
		return Call{}, err
	}
	if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "params" {
		for {
			tok, err := x.next()
			if err != nil {
				return Call{}, err
			}
			if _, ok := tok.(xml.EndElement); ok {
				break // </params>
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Local != "param" {
				return Call{}, malformed("want <param> in <params>")
			}
			if err := x.open("value"); err != nil {
				return Call{}, err
			}
			v, err := x.value(1)
			if err != nil {
				return Call{}, err
			}
			c.Params = append(c.Params, v)
			if err := x.close("param"); err != nil {
				return Call{}, err
			}
		}
		if tok, err = x.next(); err != nil {
			return Call{}, err
		}
	}
	if ee, ok := tok.(xml.EndElement); !ok || ee.Name.Local != "methodCall" {
		return Call{}, malformed("want </methodCall>")
	}
	return c, nil
}

type xmlDecoder struct {
	d *xml.Decoder
	b budget
}

// next is the next element or end, skipping whitespace, comments,
// processing instructions and directives between them.
func (x *xmlDecoder) next() (xml.Token, error) {
	for {
		tok, err := x.d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, malformed("the document ends early")
			}
			return nil, malformed("not XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, malformed("text %q where an element belongs", trim(string(t)))
			}
		}
	}
}

func (x *xmlDecoder) open(name string) error {
	tok, err := x.next()
	if err != nil {
		return err
	}
	if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != name {
		return malformed("want <%s>", name)
	}
	return nil
}

func (x *xmlDecoder) close(name string) error {
	tok, err := x.next()
	if err != nil {
		return err
	}
	if ee, ok := tok.(xml.EndElement); !ok || ee.Name.Local != name {
		return malformed("want </%s>", name)
	}
	return nil
}

// text reads character data up to </name>.
func (x *xmlDecoder) text(name string) (string, error) {
	var b strings.Builder
	for {
		tok, err := x.d.Token()
		if err != nil {
			return "", malformed("in <%s>: %v", name, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if b.Len()+len(t) > MaxBody {
				return "", malformed("<%s> is too long", name)
			}
			b.Write(t)
		case xml.EndElement:
			if t.Name.Local != name {
				return "", malformed("want </%s>", name)
			}
			return b.String(), nil
		case xml.StartElement:
			return "", malformed("<%s> inside <%s>", t.Name.Local, name)
		}
	}
}

// value reads what follows <value>, through </value>.
func (x *xmlDecoder) value(depth int) (any, error) {
	if err := x.b.take(depth); err != nil {
		return nil, err
	}
	var text strings.Builder
	for {
		tok, err := x.d.Token()
		if err != nil {
			return nil, malformed("in <value>: %v", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement: // </value>: untyped text is a string
			return text.String(), nil
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, malformed("text and <%s> in one <value>", t.Name.Local)
			}
			v, err := x.typed(t.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			if err := x.close("value"); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

func (x *xmlDecoder) typed(kind string, depth int) (any, error) {
	switch kind {
	case "string":
		return x.text(kind)
	case "i4", "int", "i8":
		s, err := x.text(kind)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, malformed("<%s>%s</%s> is not an integer", kind, trim(s), kind)
		}
		return n, nil
	case "boolean":
		s, err := x.text(kind)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, malformed("<boolean>%s</boolean> is not 0 or 1", trim(s))
	case "double":
		s, err := x.text(kind)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, malformed("<double>%s</double> is not a number", trim(s))
		}
		return f, nil
	case "dateTime.iso8601":
		s, err := x.text(kind)
		if err != nil {
			return nil, err
		}
		for _, layout := range []string{TimeLayout, "20060102T15:04:05", "2006-01-02T15:04:05Z07:00"} {
			if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
				return t.UTC(), nil
			}
		}
		return nil, malformed("<dateTime.iso8601>%s</dateTime.iso8601> is not a time", trim(s))
	case "base64":
		s, err := x.text(kind)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, malformed("<base64> is not base64")
		}
		return string(b), nil
	case "nil":
		if err := x.close("nil"); err != nil {
			return nil, err
		}
		return nil, nil
	case "array":
		if err := x.open("data"); err != nil {
			return nil, err
		}
		out := []any{}
		for {
			tok, err := x.next()
			if err != nil {
				return nil, err
			}
			if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "data" {
				break
			}
			if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != "value" {
				return nil, malformed("want <value> in <data>")
			}
			v, err := x.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, x.close("array")
	case "struct":
		out := map[string]any{}
		for {
			tok, err := x.next()
			if err != nil {
				return nil, err
			}
			if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "struct" {
				return out, nil
			}
			if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != "member" {
				return nil, malformed("want <member> in <struct>")
			}
			if err := x.open("name"); err != nil {
				return nil, err
			}
			name, err := x.text("name")
			if err != nil {
				return nil, err
			}
			if err := x.open("value"); err != nil {
				return nil, err
			}
			v, err := x.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out[name] = v
			if err := x.close("member"); err != nil {
				return nil, err
			}
		}
	}
	return nil, malformed("<%s> is no XML-RPC type", kind)
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// EncodeXMLRPCSuccess writes xapi's answer to a call that worked.
func EncodeXMLRPCSuccess(w io.Writer, v any) error {
	return encodeResponse(w, map[string]any{"Status": "Success", "Value": v})
}

// EncodeXMLRPCFailure writes xapi's answer to a call that failed: the
// error code and its parameters.
func EncodeXMLRPCFailure(w io.Writer, code string, params []string) error {
	desc := make([]any, 0, len(params)+1)
	desc = append(desc, code)
	for _, p := range params {
		desc = append(desc, p)
	}
	return encodeResponse(w, map[string]any{"Status": "Failure", "ErrorDescription": desc})
}

func encodeResponse(w io.Writer, v any) error {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodResponse><params><param>`)
	if err := EncodeXMLValue(&b, v); err != nil {
		return err
	}
	b.WriteString(`</param></params></methodResponse>`)
	_, err := w.Write(b.Bytes())
	return err
}

// EncodeXMLValue writes one <value> as xapi does: integers as strings
// (XML-RPC's i4 is too small for sizes), structs with their members in
// name order.
func EncodeXMLValue(b *bytes.Buffer, v any) error {
	b.WriteString("<value>")
	switch t := v.(type) {
	case nil:
		b.WriteString("<nil/>")
	case string:
		xmlEscape(b, t)
	case bool:
		if t {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case int:
		b.WriteString(strconv.Itoa(t))
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(t, 10))
	case float64:
		b.WriteString("<double>" + strconv.FormatFloat(t, 'g', -1, 64) + "</double>")
	case time.Time:
		b.WriteString("<dateTime.iso8601>" + t.UTC().Format(TimeLayout) + "</dateTime.iso8601>")
	case []any:
		b.WriteString("<array><data>")
		for _, x := range t {
			if err := EncodeXMLValue(b, x); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case []string:
		b.WriteString("<array><data>")
		for _, x := range t {
			b.WriteString("<value>")
			xmlEscape(b, x)
			b.WriteString("</value>")
		}
		b.WriteString("</data></array>")
	case map[string]any:
		b.WriteString("<struct>")
		for _, k := range slices.Sorted(maps.Keys(t)) {
			b.WriteString("<member><name>")
			xmlEscape(b, k)
			b.WriteString("</name>")
			if err := EncodeXMLValue(b, t[k]); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case map[string]string:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = x
		}
		b.Truncate(b.Len() - len("<value>"))
		return EncodeXMLValue(b, m)
	default:
		return fmt.Errorf("wire: no XML-RPC encoding for %T", v)
	}
	b.WriteString("</value>")
	return nil
}

func xmlEscape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s))
}
