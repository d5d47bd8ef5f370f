// Package wire is XenAPI's two wire encodings, as xapi speaks them:
// XML-RPC (POST / and /xmlrpc: a methodCall in, a methodResponse holding
// {Status: Success, Value} or {Status: Failure, ErrorDescription} out)
// and JSON-RPC 2.0 (POST /jsonrpc). Both decode to one value model (Go
// values: string, int64, bool, float64, time.Time, []any,
// map[string]any, nil) and encode from it. Decoding is bounded: size,
// nesting and element counts have limits, and anything else is a typed
// error the surface answers as XenAPI does, never a panic.
package wire

import (
	"errors"
	"fmt"
	"io"
)

// Limits bound what a request may hold.
const (
	MaxBody   = 4 << 20 // bytes of one request
	MaxDepth  = 32      // nesting of arrays and structs
	MaxValues = 100000  // values in one request
)

// Call is one decoded method call.
type Call struct {
	Method string
	Params []any
	ID     any // JSON-RPC's id (nil for XML-RPC)
}

// ErrMalformed is what a request that is not a well-formed call of the
// encoding is wrapped in.
var ErrMalformed = errors.New("malformed request")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// budget counts what a decoder has read, against the limits.
type budget struct{ values int }

func (b *budget) take(depth int) error {
	b.values++
	switch {
	case depth > MaxDepth:
		return malformed("values nested deeper than %d", MaxDepth)
	case b.values > MaxValues:
		return malformed("more than %d values", MaxValues)
	}
	return nil
}

// readBody reads a request of at most MaxBody bytes.
func readBody(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(body) > MaxBody {
		return nil, malformed("the request is larger than %d bytes", MaxBody)
	}
	return body, nil
}
