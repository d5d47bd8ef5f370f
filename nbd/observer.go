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

// Observer hears what the server does, for metrics. Its methods are called
// on the I/O path, concurrently: they must be cheap and must not block.
type Observer interface {
	// Connections changes by +1 when a client connects and -1 when it goes.
	Connections(delta int)
	// RequestStarted is called when a request is read (before it runs).
	RequestStarted(c Command)
	// RequestDone is called when its reply is queued: how long it took
	// from being read, and the error sent (0 on success).
	RequestDone(c Command, took time.Duration, errno Errno)
}

type nopObserver struct{}

func (nopObserver) Connections(int)                           {}
func (nopObserver) RequestStarted(Command)                    {}
func (nopObserver) RequestDone(Command, time.Duration, Errno) {}
