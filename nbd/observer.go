package nbd

import "time"

// Command is an NBD transmission command, for observers.
type Command uint16

// String is the command's name in lower case ("read", "write_zeroes");
// unknown commands are "unknown".
func (c Command) String() string { return commandName(uint16(c)) }

// Commands are the commands the server handles, for observers that
// prepare a series per command.
var Commands = []Command{cmdRead, cmdWrite, cmdFlush, cmdTrim, cmdCache, cmdWriteZeroes, cmdBlockStatus}

// Reason says why the server turned a client away or cut it off.
type Reason string

const (
	// ReasonMaxConnections: refused at accept, Options.MaxConns are open.
	ReasonMaxConnections Reason = "max_connections"
	// ReasonMaxHandshakes: refused at accept, Options.MaxHandshakes
	// clients are still negotiating.
	ReasonMaxHandshakes Reason = "max_handshakes"
	// ReasonHandshakeTimeout: negotiation outlasted Options.HandshakeTimeout.
	ReasonHandshakeTimeout Reason = "handshake_timeout"
	// ReasonIdleTimeout: a transmission-phase client sent nothing and
	// waited for nothing for Options.IdleTimeout.
	ReasonIdleTimeout Reason = "idle_timeout"
	// ReasonStalled: a client stopped halfway through a request's payload,
	// or stopped reading its replies, for Options.StallTimeout.
	ReasonStalled Reason = "stalled"
	// ReasonSessionEnded: the export was withdrawn from a connected
	// client (Revocable: its token was revoked or expired).
	ReasonSessionEnded Reason = "session_ended"
)

// Reasons are every Reason, for observers that prepare a series per reason.
var Reasons = []Reason{ReasonMaxConnections, ReasonMaxHandshakes, ReasonHandshakeTimeout,
	ReasonIdleTimeout, ReasonStalled, ReasonSessionEnded}

// Observer hears what the server does, for metrics. Its methods are called
// on the I/O path, concurrently: they must be cheap and must not block.
type Observer interface {
	// Connections changes by +1 when a client connects and -1 when it goes.
	Connections(delta int)
	// ConnectionRejected is called once for each client the server turns
	// away at accept or cuts off for a limit or a withdrawn session.
	ConnectionRejected(r Reason)
	// RequestStarted is called when a request is read (before it runs).
	RequestStarted(c Command)
	// RequestDone is called when its reply is queued: how long it took
	// from being read, and the error sent (0 on success).
	RequestDone(c Command, took time.Duration, errno Errno)
	// BudgetWaited is called when a request had to wait for the
	// server-wide in-flight byte budget (Options.MaxTotalInFlightBytes):
	// how long its connection's reader stood still.
	BudgetWaited(took time.Duration)
}

type nopObserver struct{}

func (nopObserver) Connections(int)                           {}
func (nopObserver) ConnectionRejected(Reason)                 {}
func (nopObserver) RequestStarted(Command)                    {}
func (nopObserver) RequestDone(Command, time.Duration, Errno) {}
func (nopObserver) BudgetWaited(time.Duration)                {}
