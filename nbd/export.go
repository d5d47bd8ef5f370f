package nbd

import (
	"context"
	"net"
)

// Exports is what the server serves: it names, describes and opens exports
// on behalf of one client connection. Implementations decide who may see
// what; the server only speaks the protocol.
type Exports interface {
	// Describe answers INFO, GO and the meta-context options for name
	// without opening anything. A refusal is an *OptionError (anything
	// else is reported as an unknown export).
	Describe(c *Conn, name string) (ExportInfo, error)
	// Open attaches the export for transmission, for GO or EXPORT_NAME,
	// and describes it as Describe would. The server calls Close on it
	// when the client is gone.
	Open(c *Conn, name string) (Export, ExportInfo, error)
	// List names the exports the connection may see, for LIST.
	List(c *Conn) ([]Listing, error)
}

// Conn is what Exports may know about the client, and where it may keep
// state across options (say, who a token in an earlier export name
// belonged to).
type Conn struct {
	Remote net.Addr
	TLS    bool // STARTTLS has succeeded
	// State belongs to the Exports implementation; the server never
	// touches it.
	State any
}

// ExportInfo describes an export as a client is told about it.
type ExportInfo struct {
	Size        uint64
	ReadOnly    bool
	Description string
	// MetaContexts names every context BLOCK_STATUS can answer for this
	// export, such as "base:allocation".
	MetaContexts []string
}

// Listing is one LIST entry.
type Listing struct {
	Name, Description string
}

// Export is an open export. Every method may be called concurrently: the
// server runs a connection's requests in parallel and several connections
// may share one backing disk. Offsets and lengths are checked against the
// size and the block size before they get here.
type Export interface {
	// ReadAt fills p from off, all of it or an error; p is not cleared
	// beforehand (it comes from a pool). It may report runs of p that read
	// as zeros and hold no data by calling zero(lo, hi), byte indexes into
	// p in ascending order; the server then sends holes instead of zero
	// bytes, but those runs of p must hold zeros all the same (DF reads
	// and simple replies send them as data).
	ReadAt(p []byte, off uint64, zero func(lo, hi int)) error
	// WriteAt stores p at off; with fua it is durable before it returns.
	WriteAt(p []byte, off uint64, fua bool) error
	// Flush makes every write that has returned durable, whichever
	// connection made it (the server advertises CAN_MULTI_CONN).
	Flush() error
	// Trim discards a range; it may do less than asked.
	Trim(off, n uint64, fua bool) error
	// Zero makes a range read as zeros. With ZeroFast it returns ENOTSUP,
	// changing nothing, unless it is cheaper than writing zeros.
	Zero(off, n uint64, f ZeroFlags) error
	// Cache is a prefetch hint.
	Cache(off, n uint64) error
	// BlockStatus reports the named meta context for [off, off+n) as
	// consecutive extents from off. It may stop early (return
	// ErrEnough from fn to stop it) and the last extent may overrun.
	BlockStatus(context string, off, n uint64, fn func(length uint64, flags uint32) error) error
	// Close detaches; no call is in flight when the server calls it.
	Close() error
}

// Revocable is an Export that can be withdrawn from a client already
// connected: its token was revoked, its user deleted, its session
// expired. When the context ends the server ends the connection as
// Shutdown does (requests in flight finish, new ones get ESHUTDOWN with
// context.Cause's message, and it hangs up a second later). The context is
// watched, not polled: a request costs nothing more.
type Revocable interface {
	Export
	Context() context.Context
}

// ZeroFlags modify Export.Zero.
type ZeroFlags uint8

const (
	ZeroFUA    ZeroFlags = 1 << iota // durable before returning
	ZeroNoHole                       // keep the range allocated
	ZeroFast                         // fail with ENOTSUP unless cheap
)
