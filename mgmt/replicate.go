package mgmt

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/peer"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/nbd/client"
)

// The replicator's two ends, over the services here and a peer's REST
// API and NBD export there.

// replicationNS is the attribute namespace of the replicator's own
// snapshots.
const replicationNS = "replication"

// localSource is this zone's side: the volume service.
type localSource struct{ vols *volume.Service }

func (l localSource) Freeze(seq int, vdi string) (string, uint64, error) {
	v, err := l.vols.Get(vdi)
	if err != nil {
		return "", 0, err
	}
	if !v.Info.CBTEnabled {
		if _, err := l.vols.SetCBT(vdi, true, "replication"); err != nil {
			return "", 0, err
		}
	}
	name := fmt.Sprintf("replication %d", seq)
	snap, err := l.vols.SnapshotAs(vdi, volume.Derivation{NameLabel: &name, By: "replication",
		Surfaces: map[string][]byte{replicationNS: []byte(fmt.Sprintf(`{"seq":%d,"base":true}`, seq))}})
	if err != nil {
		return "", 0, err
	}
	return snap.Info.ID, snap.Info.Size, nil
}

func (l localSource) Blocks(base, snap string) (*roaring.Bitmap, error) {
	if base == "" {
		bm, _, err := l.vols.AllocatedBlocks(snap)
		return bm, err
	}
	bm, _, err := l.vols.ChangedBlocks(base, snap)
	if f, ok := fault.As(err); ok && f.Code == fault.CodeChangedBlocks {
		// No changed-block chain between them (a snapshot taken before
		// CBT was on): every block either holds data in is shipped; one
		// that holds data only in base reads, and is written, as zeros.
		was, _, err := l.vols.AllocatedBlocks(base)
		if err != nil {
			return nil, err
		}
		now, _, err := l.vols.AllocatedBlocks(snap)
		if err != nil {
			return nil, err
		}
		return roaring.Or(was, now), nil
	}
	return bm, err
}

func (l localSource) Open(snap string) (replication.Reader, error) {
	vbd, err := l.vols.Attach(snap, "replication", false)
	if err != nil {
		return nil, err
	}
	return vbdReader{vbd}, nil
}

// baseOf is the relation whose base snapshot v is (0: none, a user's).
func baseOf(v volume.Volume) int {
	var mark struct {
		Seq  int  `json:"seq"`
		Base bool `json:"base"`
	}
	if raw := v.Attrs.Surfaces[replicationNS]; raw != nil && json.Unmarshal(raw, &mark) == nil && mark.Base {
		return mark.Seq
	}
	return 0
}

func (l localSource) Between(vdi, after, before string) ([]replication.Point, error) {
	v, err := l.vols.Get(vdi)
	if err != nil {
		return nil, err
	}
	// Snapshots of one VDI are ordered by the generation they froze.
	var lo uint64
	if after != "" {
		a, ferr := l.vols.Lookup(after)
		if ferr != nil {
			return nil, ferr
		}
		lo = a.Info.Gen
	}
	b, ferr := l.vols.Lookup(before)
	if ferr != nil {
		return nil, ferr
	}
	hi := b.Info.Gen
	var out []volume.Volume
	for _, id := range v.Snapshots {
		sv, ferr := l.vols.Lookup(id)
		if ferr != nil || baseOf(sv) != 0 || sv.Info.Kind != blockstore.KindSnapshot {
			continue // gone, a replicator's, or its data destroyed
		}
		if g := sv.Info.Gen; (after == "" || g > lo) && g < hi {
			out = append(out, sv)
		}
	}
	slices.SortFunc(out, func(x, y volume.Volume) int { return cmp.Compare(x.Info.Gen, y.Info.Gen) })
	points := make([]replication.Point, len(out))
	for i, sv := range out {
		points[i] = replication.Point{Snapshot: sv.Info.ID, Size: sv.Info.Size}
	}
	return points, nil
}

func (l localSource) Forget(seq int, snap string) error {
	sv, ferr := l.vols.Lookup(snap)
	if ferr != nil || baseOf(sv) != seq {
		return nil // gone already, or a user's
	}
	return l.vols.Destroy(snap, "replication")
}

func (l localSource) Sweep(seq int, vdi, keep string) error {
	v, err := l.vols.Get(vdi)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range v.Snapshots {
		sv, ferr := l.vols.Lookup(id)
		if ferr != nil || id == keep || baseOf(sv) != seq {
			continue
		}
		if err := l.vols.Destroy(id, "replication"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type vbdReader struct{ *volume.VBD }

func (r vbdReader) ReadAt(p []byte, off int64) (int, error) { return r.Disk.ReadAt(p, off) }
func (r vbdReader) Close() error                            { return r.VBD.Close() }

// peerLink is this daemon's way to a peer zone: its REST API, with the
// credentials registered for it, and its NBD exports.
type peerLink struct {
	c   *peer.Client
	tls *tls.Config // for its NBD, when it speaks TLS
}

// linkTo connects to registered zone name.
func (s *Server) linkTo(zoneName string) (peerLink, error) {
	p, pw, err := s.zones.Credentials(zoneName)
	if err != nil {
		return peerLink{}, err
	}
	c, err := peer.New(p.BaseURL(), p.Username, pw, p.CAPEM)
	if err != nil {
		return peerLink{}, err
	}
	l := peerLink{c: c}
	if p.CAPEM != "" {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(p.CAPEM))
		l.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return l, nil
}

// dial connects to VDI id's NBD export at the peer.
func (l peerLink) dial(ctx context.Context, id string) (*client.Client, error) {
	var infos []api.NBDInfo
	if err := l.c.Call(ctx, http.MethodGet, "/api/vdis/"+id+"/nbd_info", nil, &infos); err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, errors.New("the peer serves no NBD")
	}
	i := infos[0]
	var conf *tls.Config
	if i.Cert != "" {
		if l.tls == nil {
			return nil, errors.New("the peer's NBD speaks TLS: register its zone with ca_pem")
		}
		conf = l.tls.Clone()
		conf.ServerName = i.Subject
	}
	return client.Dial(ctx, net.JoinHostPort(i.Address, strconv.Itoa(i.Port)), i.ExportName, conf)
}

// peerTarget is the backup zone's side: its REST API and NBD exports.
type peerTarget struct {
	peerLink
	pool string // the vPool there
}

// newPeerTarget connects to zone name's vPool pool.
func (s *Server) newPeerTarget(zoneName, pool string) (*peerTarget, error) {
	l, err := s.linkTo(zoneName)
	if err != nil {
		return nil, err
	}
	return &peerTarget{peerLink: l, pool: pool}, nil
}

func (t *peerTarget) Replica(ctx context.Context, id, name string, size uint64, of replication.Origin) (string, error) {
	var v api.VDI
	if id != "" {
		err := t.c.Call(ctx, http.MethodGet, "/api/vdis/"+id, nil, &v)
		if f, ok := fault.As(err); ok && f.Code == api.CodeUUIDInvalid {
			id = "" // gone there: make it again
		} else if err != nil {
			return "", err
		} else {
			if uint64(v.VirtualSize) < size {
				if err := t.c.Call(ctx, http.MethodPost, "/api/vdis/"+id+"/resize", map[string]any{"size": size}, nil); err != nil {
					return "", err
				}
			}
			return id, nil
		}
	}
	if err := t.c.Call(ctx, http.MethodPost, "/api/vdis", map[string]any{"name_label": name, "virtual_size": size,
		"SR": t.pool, "replica_of": of.Zone + "/" + of.VDI}, &v); err != nil {
		return "", err
	}
	return v.UUID, nil
}

func (t *peerTarget) Open(ctx context.Context, replica string) (replication.Writer, error) {
	c, err := t.dial(ctx, replica)
	if err != nil {
		return nil, err
	}
	return nbdWriter{c}, nil
}

// nbdWriter writes with FUA off: each connection flushes at its end.
type nbdWriter struct{ *client.Client }

func (w nbdWriter) WriteAt(ctx context.Context, p []byte, off uint64) error {
	return w.Client.WriteAt(ctx, p, off, false)
}

// Snapshot freezes the replica; its origin goes in the snapshot's
// sm_config (driver_params), where the backup zone looks it up.
func (t *peerTarget) Snapshot(ctx context.Context, replica string, of replication.Origin) (string, error) {
	var v api.VDI
	if err := t.c.Call(ctx, http.MethodPost, "/api/vdis/"+replica+"/snapshot", map[string]any{"driver_params": of.Tags()}, &v); err != nil {
		return "", err
	}
	return v.UUID, nil
}

func (t *peerTarget) Destroy(ctx context.Context, id string) error {
	err := t.c.Call(ctx, http.MethodDelete, "/api/vdis/"+id, nil, nil)
	if f, ok := fault.As(err); ok && f.Code == api.CodeUUIDInvalid {
		return nil // gone already
	}
	return err
}
