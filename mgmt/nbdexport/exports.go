// Package nbdexport serves the volume service's VDIs as the NBD server's
// exports: it authorises export names (XenServer's
// /<uuid>?session_id=<token>), attaches a VBD per connection, and turns
// NBD requests into block-store calls, counting them for the statistics.
package nbdexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/nbd"
)

// NBD export names are XenServer's: "/<vdi-uuid>?session_id=<token>", the
// token from POST /api/token. With NBDAuthNone a bare "<vdi-uuid>" (or
// "/<vdi-uuid>") is enough and any session_id is ignored.

// Auth is how export names are authorised.
type Auth int

const (
	AuthToken Auth = iota // a valid token of a role at least Options.Role
	AuthNone              // anyone who reaches the port
)

// Options are what the exports serve from.
type Options struct {
	Volumes  *volume.Service
	Auth     *auth.Service
	Store    *blockstore.Store
	Counters *metrics.Registry // the vDisks' I/O counters
	Logger   *slog.Logger
	// Role is the least role that may attach over NBD (the role of
	// get_nbd_info, which is how a client learns an export name).
	Role auth.Role
}

// New makes the VDIs of the volume service an NBD export table.
func New(opts Options, mode Auth) nbd.Exports {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &nbdExports{opts: opts, auth: mode}
}

type nbdExports struct {
	opts Options
	auth Auth
}

// nbdSession is what a connection proved with an earlier export name; LIST
// answers for it.
type nbdSession struct {
	user, token string
}

// errNoExport hides whether a VDI exists from a client that may not know.
var errNoExport = nbd.UnknownExport("no such export, or the session is not valid")

// grant is what an authorised export name gives: the VDI, who asked, and
// for how long (session ends when the token stops being good enough).
type grant struct {
	id, user string
	session  context.Context
}

// resolve authorises an export name.
func (e *nbdExports) resolve(c *nbd.Conn, name string) (grant, error) {
	path, query, hasQuery := strings.Cut(name, "?")
	id := strings.TrimPrefix(path, "/")
	if uuid.Validate(id) != nil {
		return grant{}, errNoExport
	}
	var token string
	if hasQuery {
		q, perr := url.ParseQuery(query)
		if perr != nil || len(q) != 1 || len(q["session_id"]) != 1 {
			return grant{}, nbd.UnknownExport("export name: want /<uuid>?session_id=<token>")
		}
		// A XenAPI session ref (the wire protocol's get_nbd_info) is
		// OpaqueRef:<token>.
		token = strings.TrimPrefix(q.Get("session_id"), "OpaqueRef:")
	}
	if e.auth == AuthNone {
		return grant{id: id, session: context.Background()}, nil
	}
	if !strings.HasPrefix(name, "/") || token == "" {
		return grant{}, errNoExport
	}
	p, session, ok := e.opts.Auth.NBDSession(token)
	if !ok || p.Role < e.opts.Role {
		return grant{}, errNoExport
	}
	c.State = nbdSession{user: p.User, token: token}
	return grant{id: id, user: p.User, session: session}, nil
}

// describe checks that the VDI can be exported and lists its contexts.
func (e *nbdExports) describe(id string) (nbd.ExportInfo, error) {
	v, aerr := e.opts.Volumes.Lookup(id)
	switch {
	case aerr != nil:
		return nbd.ExportInfo{}, errNoExport
	case v.Info.Kind == blockstore.KindCBTMetadata:
		return nbd.ExportInfo{}, nbd.UnknownExport("VDI %s holds only changed-block metadata (cbt_metadata): it has no data to export", id)
	case v.Attrs.Lifecycle.Building != "":
		return nbd.ExportInfo{}, nbd.UnknownExport("VDI %s is still being built by task %s", id, v.Attrs.Lifecycle.Building)
	}
	info := nbd.ExportInfo{Size: v.Info.Size, ReadOnly: v.Info.ReadOnly, Description: v.Attrs.Xen.NameLabel,
		MetaContexts: []string{"base:allocation"}}
	if v.Info.CBTEnabled {
		// Forgotten and hidden bases are not offered.
		bases, err := e.opts.Volumes.CBTBases(id)
		if err != nil {
			return nbd.ExportInfo{}, errNoExport
		}
		for _, b := range bases {
			info.MetaContexts = append(info.MetaContexts, dirtyBitmapPrefix+b)
		}
	}
	return info, nil
}

const dirtyBitmapPrefix = "qemu:dirty-bitmap:"

func (e *nbdExports) Describe(c *nbd.Conn, name string) (nbd.ExportInfo, error) {
	g, err := e.resolve(c, name)
	if err != nil {
		return nbd.ExportInfo{}, err
	}
	return e.describe(g.id)
}

func (e *nbdExports) Open(c *nbd.Conn, name string) (nbd.Export, nbd.ExportInfo, error) {
	g, err := e.resolve(c, name)
	if err != nil {
		return nil, nbd.ExportInfo{}, err
	}
	id, user := g.id, g.user
	info, err := e.describe(id)
	if err != nil {
		return nil, nbd.ExportInfo{}, err
	}
	if user == "" {
		user = "(nbd-auth none)"
	}
	vbd, aerr := e.opts.Volumes.Attach(id, user, !info.ReadOnly)
	if aerr != nil {
		if f, ok := fault.As(aerr); ok {
			return nil, nbd.ExportInfo{}, nbd.PolicyRefusal("%s: %s", f.Code, f.Message)
		}
		return nil, nbd.ExportInfo{}, nbd.PolicyRefusal("%v", aerr)
	}
	e.opts.Logger.Info("NBD attach", "vdi", id, "vbd", vbd.UUID, "user", user, "writable", vbd.Writable, "remote", c.Remote)
	return &vdiExport{log: e.opts.Logger, store: e.opts.Store, vbd: vbd, d: vbd.Disk, live: !info.ReadOnly, bitmaps: map[string]*roaring.Bitmap{},
		counters: e.opts.Counters.Disk(id), session: g.session}, info, nil
}

func (e *nbdExports) List(c *nbd.Conn) ([]nbd.Listing, error) {
	sess, ok := c.State.(nbdSession)
	if e.auth == AuthToken && !ok {
		return nil, nbd.PolicyRefusal("LIST needs a session: first name an export as /<uuid>?session_id=<token> (INFO or LIST_META_CONTEXT)")
	}
	if ok {
		if p, err := e.opts.Auth.Authenticate(sess.token, ""); err != nil || p.Role < e.opts.Role {
			return nil, nbd.PolicyRefusal("the session is no longer valid")
		}
	}
	var out []nbd.Listing
	e.opts.Volumes.Each(func(v *volume.Volume) {
		if v.Info.Kind == blockstore.KindCBTMetadata || v.Attrs.Lifecycle.Building != "" {
			return
		}
		name := "/" + v.Info.ID
		if ok {
			name += "?session_id=" + sess.token
		}
		out = append(out, nbd.Listing{Name: name, Description: v.Attrs.Xen.NameLabel})
	})
	return out, nil
}

// vdiExport is one NBD connection's view of a VDI.
type vdiExport struct {
	log   *slog.Logger
	store *blockstore.Store
	vbd   *volume.VBD
	d     *blockstore.Disk
	live  bool // writable: its changed blocks move under it
	// counters are the vDisk's statistics: what the client asked for and
	// got, counted after the store answered.
	counters *metrics.Counters
	// session ends when the token the client connected with is no longer
	// good for NBD; the server then ends the connection (nbd.Revocable).
	session context.Context

	mu      sync.Mutex
	bitmaps map[string]*roaring.Bitmap // read-only exports: base -> changed blocks
}

// nbdErr maps a store error to the NBD error the client sees.
func nbdErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blockstore.ErrReadOnly):
		return fmt.Errorf("%w: %w", nbd.EPERM, err)
	case errors.Is(err, blockstore.ErrOutOfRange), errors.Is(err, blockstore.ErrInvalid):
		return fmt.Errorf("%w: %w", nbd.EINVAL, err)
	case errors.Is(err, blockstore.ErrClosed):
		return fmt.Errorf("%w: %w", nbd.ESHUTDOWN, err)
	}
	return err // ENOSPC and the like map by errno; the rest is EIO
}

func (x *vdiExport) ReadAt(p []byte, off uint64, zero func(lo, hi int)) error {
	if err := x.d.ReadSparse(p, off, zero); err != nil {
		return nbdErr(err)
	}
	x.counters.Read(len(p))
	return nil
}

func (x *vdiExport) WriteAt(p []byte, off uint64, fua bool) error {
	var f blockstore.Flags
	if fua {
		f |= blockstore.FUA
	}
	if err := x.d.Write(off, p, f); err != nil {
		return nbdErr(err)
	}
	x.counters.Write(len(p))
	return nil
}

func (x *vdiExport) Flush() error { return nbdErr(x.d.Flush()) }

// Trim discards the whole 4 KiB blocks of the range: proto.md lets a
// server round inward, and a partial block would cost a read-modify-write
// for no space.
func (x *vdiExport) Trim(off, n uint64, fua bool) error {
	lo := (off + blockstore.BlockSize - 1) &^ (blockstore.BlockSize - 1)
	hi := (off + n) &^ (blockstore.BlockSize - 1)
	if hi <= lo {
		return nil
	}
	var f blockstore.Flags
	if fua {
		f |= blockstore.FUA
	}
	return nbdErr(x.d.Trim(lo, hi-lo, f))
}

// Zero writes markers, not data, for whole 4 KiB blocks; a partial block
// is a read-modify-write, no faster than WRITE, so FAST_ZERO refuses it.
func (x *vdiExport) Zero(off, n uint64, f nbd.ZeroFlags) error {
	if f&nbd.ZeroFast != 0 && (off|n)&(blockstore.BlockSize-1) != 0 {
		return fmt.Errorf("%w: zeroing a partial 4 KiB block is a read-modify-write", nbd.ENOTSUP)
	}
	var bf blockstore.Flags
	if f&nbd.ZeroFUA != 0 {
		bf |= blockstore.FUA
	}
	if f&nbd.ZeroNoHole != 0 {
		bf |= blockstore.NoHole
	}
	return nbdErr(x.d.Zero(off, n, bf))
}

// maxCache bounds what one CACHE request reads ahead.
const maxCache = 64 << 20

// Cache reads the range (up to maxCache) so that pebble's block cache holds
// it; the data is dropped.
func (x *vdiExport) Cache(off, n uint64) error {
	n = min(n, maxCache)
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, uint64(len(buf)))
		if err := x.d.ReadSparse(buf[:k], off, nil); err != nil {
			return nbdErr(err)
		}
		off, n = off+k, n-k
	}
	return nil
}

func (x *vdiExport) BlockStatus(ctx string, off, n uint64, fn func(length uint64, flags uint32) error) error {
	if ctx == "base:allocation" {
		return nbdErr(x.d.Extents(off, n, func(e blockstore.Extent) error {
			return fn(e.Length, uint32(e.Flags))
		}))
	}
	base, ok := strings.CutPrefix(ctx, dirtyBitmapPrefix)
	if !ok {
		return fmt.Errorf("%w: unknown meta context %q", nbd.EINVAL, ctx)
	}
	bm, err := x.changedSince(base)
	if err != nil {
		return err
	}
	end := off + n
	return cbt.Runs(bm, off>>cbt.BlockShift, (end-1)>>cbt.BlockShift+1, func(lo, hi uint64, set bool) error {
		lo, hi = max(lo<<cbt.BlockShift, off), min(hi<<cbt.BlockShift, end)
		var flags uint32
		if set {
			flags = 1 // NBD_STATE_DIRTY
		}
		return fn(hi-lo, flags)
	})
}

// changedSince is list_changed_blocks(base, this VDI). A snapshot's answer
// never changes and is kept; a live VDI's is taken afresh, so writes on
// this or any connection show at once.
func (x *vdiExport) changedSince(base string) (*roaring.Bitmap, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if bm := x.bitmaps[base]; bm != nil {
		return bm, nil
	}
	bm, _, err := x.store.ChangedBlocks(base, x.d.ID())
	if err != nil {
		return nil, fmt.Errorf("changed blocks since %s: %w", base, err)
	}
	if !x.live {
		x.bitmaps[base] = bm
	}
	return bm, nil
}

// Context makes the export nbd.Revocable.
func (x *vdiExport) Context() context.Context { return x.session }

func (x *vdiExport) Close() error {
	x.log.Info("NBD detach", "vdi", x.vbd.VDI, "vbd", x.vbd.UUID)
	return x.vbd.Close()
}

var _ nbd.Revocable = (*vdiExport)(nil)
