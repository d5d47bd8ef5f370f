// Package fault is the error vocabulary of vdiskd's management services:
// what went wrong (a Kind every surface maps to its own status and body)
// and XenAPI's (code, params) pair, which scripts written against
// XenServer branch on. It imports no transport, so the services that
// return these errors stay free of HTTP.
package fault

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is the class of a failure; each surface turns it into its own
// status (REST: 400, 404, 409, ...) and error body.
type Kind int

// The kinds.
const (
	Internal        Kind = iota // a bug or a failing disk
	Invalid                     // the input can never succeed
	Unauthenticated             // no, bad or expired credentials
	Forbidden                   // the caller's role is too low
	NotFound                    // the object does not exist
	Conflict                    // well formed, but the object's state refuses it
	TooMany                     // slow down (Retry-After)
	TooLarge                    // the request is too big
	NoSpace                     // the disk is full
	Unavailable                 // shutting down
	NotAllowed                  // the method is not allowed on this path
)

var kindNames = [...]string{"internal", "invalid", "unauthenticated", "forbidden", "not found",
	"conflict", "too many requests", "too large", "no space", "unavailable", "not allowed"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Error is a failure as services report it.
type Error struct {
	Kind    Kind     `json:"-"`
	Code    string   `json:"code"`    // XenAPI's name where XenAPI has the case
	Params  []string `json:"params"`  // XenAPI's parameters for Code; never nil
	Message string   `json:"message"` // for people
	// RetryAfter, when set, tells the caller when to try again.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string {
	if len(e.Params) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s [%s]: %s", e.Code, strings.Join(e.Params, ", "), e.Message)
}

// New makes an Error.
func New(kind Kind, code string, params []string, format string, args ...any) *Error {
	if params == nil {
		params = []string{}
	}
	return &Error{Kind: kind, Code: code, Params: params, Message: fmt.Sprintf(format, args...)}
}

// As finds the Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e, true
	}
	return nil, false
}

// BadRequest is input that can never succeed.
func BadRequest(code string, params []string, format string, args ...any) *Error {
	return New(Invalid, code, params, format, args...)
}

// InvalidValue names the field and the value refused.
func InvalidValue(field, value, format string, args ...any) *Error {
	return New(Invalid, CodeInvalidValue, []string{field, value}, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Conflicts is a request the object's state refuses.
func Conflicts(code string, params []string, format string, args ...any) *Error {
	return New(Conflict, code, params, format, args...)
}

// Missing is an unknown object of a class ("VDI", "SR", "user", ...).
func Missing(class, id string) *Error {
	return New(NotFound, CodeUUIDInvalid, []string{class, id}, "no %s %q", class, id)
}

// Internalf is a failure that is nobody's input's fault.
func Internalf(params []string, format string, args ...any) *Error {
	return New(Internal, CodeInternal, params, format, args...)
}

// ShuttingDown is what every call gets once the daemon stops.
func ShuttingDown() *Error {
	return New(Unavailable, CodeServerShutdown, nil, "vdiskd is shutting down")
}
