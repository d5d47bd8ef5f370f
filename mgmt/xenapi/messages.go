// Package xenapi is XenAPI's own wire protocol on vdiskd (issue 20):
// JSON-RPC at POST /jsonrpc, XML-RPC at POST / and /xmlrpc, as xapi
// serves them, so XenAPI clients (Xen Orchestra's xen-api, XenAPI.py)
// talk to vdiskd unchanged. Each XenAPI message is declared once
// (Message): its class and name, its parameters after the session, its
// minimum role, and its handler over the services; the dispatcher checks
// the session, the arity and the role, and answers xapi's errors.
//
// This file is the dispatcher. Handles are OpaqueRef:<uuid> of the
// object (refs.go); a session ref is OpaqueRef:<the vdiskd token>, so an
// NBD export name carrying it is accepted like a token, and logging out
// revokes both.
package xenapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/task"
)

// Message declares one XenAPI message.
type Message struct {
	Class, Name string
	// Params name the parameters after the session, in order; the last
	// Optional of them may be left out (they are then nil).
	Params   []string
	Optional int
	// NoSession: the message takes no session (login, listMethods).
	NoSession bool
	Role      auth.Role
	Summary   string
	Handle    func(c *Ctx, args []any) (any, error)
}

// FullName is Class.name, as clients call it.
func (m *Message) FullName() string { return m.Class + "." + m.Name }

// Ctx is one message being answered.
type Ctx struct {
	auth.Principal
	S *Surface
	// task is the task an Async. call runs as: its id, its cancel and
	// its progress; unset for a synchronous call (see the methods).
	task     string
	ctx      context.Context
	progress func(float64)
}

// TaskID names the work a call does (a copy marks its new VDI with it): the
// Async. task's id, or a fresh one nothing records for a synchronous call.
func (c *Ctx) TaskID() string {
	if c.task == "" {
		c.task = task.NewID()
	}
	return c.task
}

// Context is cancelled when the Async. task is; a synchronous call's never
// is.
func (c *Ctx) Context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// Progress tells the Async. task how far the call is; nothing for a
// synchronous one.
func (c *Ctx) Progress(f float64) {
	if c.progress != nil {
		c.progress(f)
	}
}

// messages are every message, by full name (filled by each class's file).
var messages = map[string]*Message{}

func declare(ms ...*Message) {
	for _, m := range ms {
		if _, dup := messages[m.FullName()]; dup {
			panic("xenapi: " + m.FullName() + " declared twice")
		}
		messages[m.FullName()] = m
	}
}

// MethodNames lists every message, and its Async. twin where it has one,
// as system.listMethods answers.
func MethodNames() []string {
	var out []string
	for name, m := range messages {
		out = append(out, name)
		if m.async() {
			out = append(out, "Async."+name)
		}
	}
	slices.Sort(out)
	return out
}

// async reports whether a message has an Async. twin, as in xapi: every
// one that takes a session but the reads (get_*) and the session's,
// tasks' and events' own. (The xen-api client takes every listed
// "X.get_all_records" as a class X to load.)
func (m *Message) async() bool {
	return !m.NoSession && !strings.HasPrefix(m.Name, "get_") && m.Class != "session" && m.Class != "task" && m.Class != "event"
}

// xenError is xapi's error: a code and its parameters.
func xenError(code string, params ...string) *fault.Error {
	return fault.New(fault.Invalid, code, params, "%s %s", code, strings.Join(params, " "))
}

// dispatch answers one call: the session checked (but for NoSession
// messages), the arity and the role, then the handler.
func (s *Surface) dispatch(method string, params []any) (any, error) {
	name, isAsync := strings.CutPrefix(method, "Async.")
	m, ok := messages[name]
	if !ok || (isAsync && !m.async()) {
		return nil, xenError(fault.CodeMethodUnknown, method)
	}
	c := &Ctx{S: s}
	args := params
	if !m.NoSession {
		if len(params) == 0 {
			return nil, xenError(CodeParameterCountMismatch, method, fmt.Sprint(len(m.Params)+1), "0")
		}
		ref, _ := params[0].(string)
		p, err := s.session(ref)
		if err != nil {
			return nil, err
		}
		c.Principal, args = p, params[1:]
		if !p.Role.Allows(m.Role) {
			return nil, xenError(fault.CodePermissionDenied, m.FullName(), "the user's role ("+p.Role.String()+") is below "+m.Role.String())
		}
	}
	if len(args) > len(m.Params) || len(args) < len(m.Params)-m.Optional {
		want := len(m.Params)
		if !m.NoSession {
			want++
		}
		return nil, xenError(CodeParameterCountMismatch, method, fmt.Sprint(want), fmt.Sprint(len(params)))
	}
	for len(args) < len(m.Params) {
		args = append(slices.Clip(args), nil)
	}
	if isAsync {
		return s.async(m, c, args)
	}
	return m.Handle(c, args)
}

// XenAPI codes this surface answers beyond the shared ones.
const (
	CodeParameterCountMismatch = "MESSAGE_PARAMETER_COUNT_MISMATCH"
	CodeHandleInvalid          = "HANDLE_INVALID"
	CodeFieldTypeError         = "FIELD_TYPE_ERROR"
)

// session checks a session ref: OpaqueRef:<a live vdiskd token>.
func (s *Surface) session(ref string) (auth.Principal, error) {
	tok, ok := strings.CutPrefix(ref, refPrefix)
	if !ok || tok == "" {
		return auth.Principal{}, xenError(fault.CodeSessionInvalid, ref)
	}
	p, err := s.opts.Auth.Authenticate(tok, "")
	if err != nil {
		return auth.Principal{}, xenError(fault.CodeSessionInvalid, ref)
	}
	return p, nil
}

// str reads a string parameter.
func str(args []any, i int, name string) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", xenError(CodeFieldTypeError, name)
	}
	return s, nil
}
