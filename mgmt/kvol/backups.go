package kvol

import (
	"context"
	"fmt"
	"slices"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/replication"
)

// backup is one relation of a (zone, vPool) as kvol shows it.
type backup struct {
	seq              int
	srcZone, dstZone string
	dstVPool         string
	status, reason   string
}

// backupsOf are the relations replicating vPool vtype (guid or name) of
// zone. The origin answers for its own; when it does not (down, or not a
// peer of this zone), the zones that do answer say which replicas they
// hold of it, so a backup zone can be found while its origin is down.
func (a *asked) backupsOf(zone, vtype string) ([]backup, error) {
	if z := a.zone(zone); z != nil && z.Reachable() {
		ctx, cancel := context.WithTimeout(a.ctx, askTimeout)
		rels, err := z.Relations(ctx)
		cancel()
		if err == nil {
			var out []backup
			for _, r := range rels {
				if r.VPool == vtype || r.VPoolName == vtype {
					out = append(out, backup{seq: r.Seq, srcZone: zone, dstZone: r.DstZone, dstVPool: r.DstVPool,
						status: r.Status, reason: r.Reason})
				}
			}
			return out, nil
		}
		if z.Local() {
			return nil, err
		}
		a.s.log.Warn("kvol: the origin zone did not answer; asking its backup zones", "zone", zone, "err", err)
	}
	why := fmt.Sprintf("zone %s does not answer", zone)
	if a.zone(zone) == nil {
		why = fmt.Sprintf("zone %s is not a peer of zone %s", zone, a.s.opts.Zone)
	}
	held, err := a.replicas(api.ReplicaListArgs{OriginZone: zone, OriginVPool: vtype}, zone)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []backup
	for _, h := range held {
		k := fmt.Sprint(h.OriginSeq, "/", h.zone.Name())
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, backup{seq: h.OriginSeq, srcZone: zone, dstZone: h.zone.Name(), dstVPool: h.VPoolName,
			status: replication.StateBroken,
			reason: why + "; known from the replica snapshots zone " + h.zone.Name() + " holds"})
	}
	slices.SortFunc(out, func(x, y backup) int { return x.seq - y.seq })
	return out, nil
}

// list answers kvol list.
func (s *Service) list(ctx context.Context, a *kvolapi.ListArgs) (kvolapi.Backups, error) {
	q := s.ask(ctx)
	bs, err := q.backupsOf(a.Zone, a.VolumeTypeID)
	if err != nil {
		return kvolapi.Backups{}, err
	}
	out := kvolapi.Backups{Backup: []kvolapi.Backup{}}
	for _, b := range bs {
		n := q.node(b.dstZone)
		out.Backup = append(out.Backup, kvolapi.Backup{ClusterIP: n.apiHost, Name: b.dstVPool, Seq: b.seq,
			SVMIP: n.nbdHost, SVMName: n.name, ZoneID: b.dstZone})
	}
	return out, nil
}

// show answers kvol show.
func (s *Service) show(ctx context.Context, a *kvolapi.ShowArgs) (kvolapi.BackupDetails, error) {
	q := s.ask(ctx)
	bs, err := q.backupsOf(a.SrcZone, a.SrcVolumeTypeID)
	if err != nil {
		return kvolapi.BackupDetails{}, err
	}
	out := kvolapi.BackupDetails{BackupDetail: []kvolapi.BackupDetail{}}
	src := q.node(a.SrcZone)
	for _, b := range bs {
		if a.DstZone != "" && b.dstZone != a.DstZone {
			continue
		}
		dst := q.node(b.dstZone)
		out.BackupDetail = append(out.BackupDetail, kvolapi.BackupDetail{
			SrcZone: b.srcZone, SrcVolTypeID: a.SrcVolumeTypeID, SrcSVMName: src.name, SrcPath: src.nbdPath,
			DstZone: b.dstZone, DstSVMName: dst.name, DstPath: dst.nbdPath, Status: b.status, Reason: b.reason, Seq: b.seq})
	}
	return out, nil
}
