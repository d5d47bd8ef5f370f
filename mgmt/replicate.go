package mgmt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/mgmt/api"
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
	return bm, err
}

func (l localSource) Open(snap string) (replication.Reader, error) {
	vbd, err := l.vols.Attach(snap, "replication", false)
	if err != nil {
		return nil, err
	}
	return vbdReader{vbd}, nil
}

func (l localSource) Drop(snap string) error { return l.vols.Destroy(snap, "replication") }

type vbdReader struct{ *volume.VBD }

func (r vbdReader) ReadAt(p []byte, off int64) (int, error) { return r.Disk.ReadAt(p, off) }
func (r vbdReader) Close() error                            { return r.VBD.Close() }

// peerTarget is the backup zone's side: its REST API and NBD exports.
type peerTarget struct {
	c    *peer.Client
	pool string      // the vPool there
	tls  *tls.Config // for its NBD, when it speaks TLS
}

// newPeerTarget connects to zone name's vPool pool.
func (s *Server) newPeerTarget(zoneName, pool string) (*peerTarget, error) {
	p, pw, err := s.zones.Credentials(zoneName)
	if err != nil {
		return nil, err
	}
	c, err := peer.New(p.BaseURL(), p.Username, pw, p.CAPEM)
	if err != nil {
		return nil, err
	}
	t := &peerTarget{c: c, pool: pool}
	if p.CAPEM != "" {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(p.CAPEM))
		t.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

func (t *peerTarget) Replica(ctx context.Context, id, name string, size uint64) (string, error) {
	var v api.VDI
	if id != "" {
		err := t.c.Call(ctx, http.MethodGet, "/api/vdis/"+id, nil, &v)
		if f, ok := faultOf(err); ok && f.Code == api.CodeUUIDInvalid {
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
		"SR": t.pool}, &v); err != nil {
		return "", err
	}
	return v.UUID, nil
}

func (t *peerTarget) Open(ctx context.Context, replica string) (replication.Writer, error) {
	var infos []api.NBDInfo
	if err := t.c.Call(ctx, http.MethodGet, "/api/vdis/"+replica+"/nbd_info", nil, &infos); err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, errors.New("the peer serves no NBD")
	}
	i := infos[0]
	var conf *tls.Config
	if i.Cert != "" {
		if t.tls == nil {
			return nil, errors.New("the peer's NBD speaks TLS: register its zone with ca_pem")
		}
		conf = t.tls.Clone()
		conf.ServerName = i.Subject
	}
	c, err := client.Dial(ctx, net.JoinHostPort(i.Address, strconv.Itoa(i.Port)), i.ExportName, conf)
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

func (t *peerTarget) Snapshot(ctx context.Context, replica string) (string, error) {
	var v api.VDI
	if err := t.c.Call(ctx, http.MethodPost, "/api/vdis/"+replica+"/snapshot", nil, &v); err != nil {
		return "", err
	}
	return v.UUID, nil
}

func faultOf(err error) (*api.Error, bool) {
	var f *api.Error
	if errors.As(err, &f) && f != nil {
		return f, true
	}
	return nil, false
}
