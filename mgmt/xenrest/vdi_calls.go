package xenrest

import (
	"slices"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

func (s *Surface) vdiList(c *rpc.Call, a *api.VDIListArgs) (any, error) {
	pool := ""
	if a.SR != "" {
		p, err := s.vols.Pool(a.SR, "SR")
		if err != nil {
			return nil, err
		}
		pool = p.GUID
	}
	ids := s.vols.Find(func(v *volume.Volume) bool {
		x := v.Attrs.Xen
		return (a.NameLabel == "" || x.NameLabel == a.NameLabel) && (pool == "" || v.Info.Pool == pool) &&
			(a.Tag == "" || slices.Contains(x.Tags, a.Tag))
	})
	// Ids come sorted by uuid, the default order: a page of them needs
	// only its own records.
	if a.Sort == "" && a.Page > 0 {
		return pageOfIDs(ids, a.PageArgs, func(id string) (api.VDI, bool) {
			v, err := s.vols.Get(id)
			return record(v), err == nil
		})
	}
	out := make([]api.VDI, 0, len(ids))
	for _, id := range ids {
		if v, err := s.vols.Get(id); err == nil { // destroyed meanwhile: skipped
			out = append(out, record(v))
		}
	}
	return page(out, a.PageArgs, "uuid")
}

func (s *Surface) vdiGet(c *rpc.Call, a *api.VDIRef) (any, error) {
	return answer(s.vols.Get(a.UUID))
}

func (s *Surface) vdiCreate(c *rpc.Call, a *api.VDICreateArgs) (any, error) {
	v, err := s.vols.Create(xenrecord.Creation(a, c.User))
	if err != nil {
		return nil, err
	}
	return rpc.Created{Location: "/api/vdis/" + v.Info.ID, Body: record(v)}, nil
}

func (s *Surface) vdiDestroy(c *rpc.Call, a *api.VDIRef) (any, error) {
	return nil, s.vols.Destroy(a.UUID, c.User)
}

func (s *Surface) vdiForget(c *rpc.Call, a *api.VDIRef) (any, error) {
	return nil, s.vols.Forget(a.UUID, c.User)
}

func (s *Surface) vdiIntroduce(c *rpc.Call, a *api.VDIIntroduceArgs) (any, error) {
	req, err := xenrecord.Introduction(a)
	if err != nil {
		return nil, err
	}
	v, err := s.vols.Introduce(req)
	if err != nil {
		return nil, err
	}
	return rpc.Created{Location: "/api/vdis/" + v.Info.ID, Body: record(v)}, nil
}

func (s *Surface) vdiSnapshot(c *rpc.Call, a *api.VDIDriverParamsArgs) (any, error) {
	return answer(s.vols.Snapshot(a.UUID, a.DriverParams, c.User))
}

func (s *Surface) vdiClone(c *rpc.Call, a *api.VDIDriverParamsArgs) (any, error) {
	return answer(s.vols.Clone(a.UUID, a.DriverParams, c.User))
}

func (s *Surface) vdiResize(c *rpc.Call, a *api.VDIResizeArgs) (any, error) {
	return answer(s.vols.Resize(a.UUID, uint64(a.Size), "resize", c.User))
}

func (s *Surface) vdiResizeOnline(c *rpc.Call, a *api.VDIResizeArgs) (any, error) {
	return answer(s.vols.Resize(a.UUID, uint64(a.Size), "resize_online", c.User))
}

func (s *Surface) vdiEnableCBT(c *rpc.Call, a *api.VDIRef) (any, error) {
	return answer(s.vols.SetCBT(a.UUID, true, c.User))
}

func (s *Surface) vdiDisableCBT(c *rpc.Call, a *api.VDIRef) (any, error) {
	return answer(s.vols.SetCBT(a.UUID, false, c.User))
}

func (s *Surface) vdiListChangedBlocks(c *rpc.Call, a *api.VDIChangedBlocksArgs) (any, error) {
	bm, size, err := s.vols.ChangedBlocks(a.VDIFrom, a.UUID)
	if err != nil {
		return nil, err
	}
	return api.ChangedBlocks{Bitmap: cbt.Encode(bm, size), Granularity: cbt.BlockSize,
		ChangedBlocks: int(bm.GetCardinality()), VirtualSize: int64(size)}, nil
}

func (s *Surface) vdiDataDestroy(c *rpc.Call, a *api.VDIRef) (any, error) {
	return answer(s.vols.DataDestroy(a.UUID, c.User))
}

func (s *Surface) vdiUpdate(c *rpc.Call, a *api.VDIRef) (any, error) {
	return answer(s.vols.Check(a.UUID, "update"))
}

func (s *Surface) vdiNBDInfo(c *rpc.Call, a *api.VDIRef) (any, error) {
	v, err := s.vols.Lookup(a.UUID)
	if err != nil {
		return nil, err
	}
	if v.Info.Kind == blockstore.KindCBTMetadata {
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{a.UUID, "cbt_metadata"}, "VDI %s holds no data to export", a.UUID)
	}
	if s.opts.NBDInfo == nil {
		return []api.NBDInfo{}, nil
	}
	// XenServer's export name carries the caller's session; with
	// --nbd-auth=none the bare path is enough and no token travels.
	name := "/" + a.UUID
	if s.opts.TokenExports {
		name += "?session_id=" + c.Token
	}
	return orSlice(s.opts.NBDInfo(name)), nil
}

func (s *Surface) vdiStatistics(c *rpc.Call, a *api.VDIRef) (any, error) {
	if _, err := s.vols.Lookup(a.UUID); err != nil {
		return nil, err
	}
	return s.VDiskStatistics(a.UUID), nil
}

func (s *Surface) vdiOpenDatabase(c *rpc.Call, a *api.VDIRef) (any, error) {
	v, err := s.vols.Lookup(a.UUID)
	if err != nil {
		return nil, err
	}
	return nil, xenrecord.OpenDatabase(v)
}

func (s *Surface) vdiReadDatabasePoolUUID(c *rpc.Call, a *api.VDIRef) (any, error) {
	if _, err := s.vols.Lookup(a.UUID); err != nil {
		return nil, err
	}
	return api.Value{Value: ""}, nil
}
