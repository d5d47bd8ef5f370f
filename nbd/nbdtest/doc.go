// Package nbdtest is an NBD client for tests, as net/http/httptest is an
// HTTP server for them. It speaks the protocol of the NetworkBlockDevice
// project's doc/proto.md byte by byte, so that a test can do what a
// well-behaved client does (fixed-newstyle negotiation with any option,
// STARTTLS, structured replies, meta contexts, many requests in flight)
// and what no real client would (any bytes, any header, any length, a
// stop in the middle of a message), and it checks every reply against the
// document's rules: magic numbers, lengths, chunk shapes, a READ's chunks
// covering it exactly, error messages being strings.
//
// A Client belongs to one test. Used synchronously (Send, Recv, Do, Read,
// Write, Opt, Go and the like, on the test's goroutine) it fails the test
// when the connection fails or the server breaks the protocol, and the
// test sees every reply in the order it arrived. After Pipeline, a
// goroutine reads the replies and any goroutine may Submit requests and
// Wait for their calls; nothing then fails the test by itself, and when
// the connection dies every call in flight fails with the reader's error.
//
// No wait is unbounded: every read of a message has a deadline
// (Client.Timeout, DefaultTimeout by default), a pipelined call that gets
// no answer in time closes the connection, and the socket is closed when
// the test ends.
//
//	c := nbdtest.Connect(t, "tcp", addr, nbdtest.Negotiation{Export: name, Structured: true})
//	c.Write(0, data)
//	r := c.Do(0, nbdtest.CmdRead, 0, 4096, nil) // r.Errno, r.Data, r.Msgs
//	c.Disconnect()
//
// The package keeps its own protocol constants and does not import
// package nbd, whose own tests use it.
package nbdtest
