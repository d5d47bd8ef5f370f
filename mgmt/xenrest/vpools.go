package xenrest

import (
	"context"
	"net"
	"slices"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/datadir"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// vpoolRecord builds the OVS vPool object.
func (s *Surface) vpoolRecord(p volume.Pool) api.VPool {
	meta := map[string]any{"backend_type": api.BackendLocal, "local_connection_path": s.opts.DataDir}
	for k, v := range p.Metadata {
		if _, reserved := meta[k]; !reserved {
			meta[k] = v
		}
	}
	vdisks := orSlice(s.vols.Find(func(v *volume.Volume) bool { return v.Info.Pool == p.GUID }))
	stored, err := s.store.PoolUsage(p.GUID)
	if err != nil {
		s.log.Warn("measuring a vPool failed", "pool", p.Name, "err", err)
	}
	size := p.Size
	if size == 0 {
		size = datadir.FilesystemSize(s.opts.DataDir)
	}
	return api.VPool{
		GUID: p.GUID, Name: p.Name, Description: p.Description, Size: size, Metadata: meta,
		BackendType: api.BackendLocal, Type: api.BackendLocal, Statistics: s.VPoolStatistics(p.GUID),
		Status: api.VPoolRunning, StoredData: int64(stored), VMachinesGUIDs: []string{},
		VDisksGUIDs: vdisks, StorageDriversGUIDs: []string{p.StorageDriver},
	}
}

func (s *Surface) vpoolList(c *rpc.Call, a *api.VPoolListArgs) (any, error) {
	pools := s.vols.Pools()
	out := make([]api.VPool, 0, len(pools))
	for _, p := range pools {
		out = append(out, s.vpoolRecord(p))
	}
	return page(out, a.PageArgs, "name")
}

func (s *Surface) vpoolGet(c *rpc.Call, a *api.VPoolRef) (any, error) {
	p, err := s.vols.Pool(a.GUID, "vPool")
	if err != nil {
		return nil, err
	}
	return s.vpoolRecord(p), nil
}

func (s *Surface) vpoolCreate(c *rpc.Call, a *api.VPoolCreateArgs) (any, error) {
	p, err := s.vols.CreatePool(volume.NewPool{Name: a.Name, Description: a.Description, Size: a.Size, Metadata: a.Metadata})
	if err != nil {
		return nil, err
	}
	return rpc.Created{Location: "/api/vpools/" + p.GUID, Body: s.vpoolRecord(p)}, nil
}

func (s *Surface) vpoolDelete(c *rpc.Call, a *api.VPoolRef) (any, error) {
	return nil, s.vols.DeletePool(a.GUID)
}

// vpoolConfiguration is get_configuration: OVS's keys where this design
// has the concept, with their true values; no SCOs or DTL exist here.
func (s *Surface) vpoolConfiguration(c *rpc.Call, a *api.VPoolRef) (any, error) {
	p, err := s.vols.Pool(a.GUID, "vPool")
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"backend_type":       api.BackendLocal,
		"dtl_enabled":        false,
		"dtl_mode":           "no_sync",
		"dedupe_mode":        "non_dedupe",
		"cache_strategy":     "on_read",
		"cluster_size":       blockstore.BlockSize / 1024, // KiB, OVS's unit
		"cbt_block_size":     65536,
		"size_alignment":     blockstore.SizeAlign,
		"max_vdi_size":       int64(blockstore.MaxSize),
		"storagedriver_guid": p.StorageDriver,
	}, nil
}

func (s *Surface) storageRouter() api.StorageRouter {
	pools, drivers := []string{}, []string{}
	byAge := s.vols.Pools()
	slices.SortStableFunc(byAge, func(a, b volume.Pool) int { return a.Created.Compare(b.Created) })
	for _, p := range byAge {
		pools = append(pools, p.GUID)
		drivers = append(drivers, p.StorageDriver)
	}
	ip := s.opts.Address
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return api.StorageRouter{GUID: s.opts.NodeGUID, Name: s.opts.NodeName, IP: ip, Zone: s.opts.Zone,
		NodeType: "MASTER", VPoolsGUIDs: pools, StorageDriversGUIDs: drivers}
}

func (s *Surface) vpoolStorageRouters(c *rpc.Call, a *api.VPoolRef) (any, error) {
	if _, err := s.vols.Pool(a.GUID, "vPool"); err != nil {
		return nil, err
	}
	return page([]api.StorageRouter{s.storageRouter()}, api.PageArgs{}, "name")
}

func (s *Surface) vpoolSyncVMachines(c *rpc.Call, a *api.VPoolRef) (any, error) {
	p, err := s.vols.Pool(a.GUID, "vPool")
	if err != nil {
		return nil, err
	}
	rec, serr := s.tasks.Start(task.NewID(), "vPool.sync_vmachines", p.GUID, c.User, func(context.Context, func(float64)) (any, error) {
		// No hypervisor inventory: there is nothing to sync, and saying so
		// beats inventing vMachines.
		return map[string]any{"vmachines_guids": []string{}}, nil
	})
	if serr != nil {
		return nil, serr
	}
	return rpc.Started{TaskID: rec.UUID, Body: rec}, nil
}

// vpoolUpdateStorageDrivers validates against the one StorageRouter and
// StorageDriver that exist, then runs the (empty) change as a task.
func (s *Surface) vpoolUpdateStorageDrivers(c *rpc.Call, a *api.VPoolUpdateStorageDriversArgs) (any, error) {
	p, err := s.vols.Pool(a.GUID, "vPool")
	if err != nil {
		return nil, err
	}
	for _, r := range a.StorageRouterGUIDs {
		if r != s.opts.NodeGUID {
			return nil, api.NotFound("StorageRouter", r)
		}
	}
	driver := p.StorageDriver
	if a.StorageDriverGUID != "" && a.StorageDriverGUID != driver {
		return nil, api.InvalidValue("storagedriver_guid", a.StorageDriverGUID, "is not a StorageDriver of vPool %s", p.Name)
	}
	for _, d := range a.StorageDriverGUIDs {
		if d != driver {
			return nil, api.InvalidValue("storagedriver_guids", d, "is not a StorageDriver of vPool %s", p.Name)
		}
		return nil, api.Conflict(api.CodeOperationNotAllowed, []string{"cannot remove the only StorageDriver"},
			"StorageDriver %s is the only one serving vPool %s", d, p.Name)
	}
	rec, serr := s.tasks.Start(task.NewID(), "vPool.update_storagedrivers", p.GUID, c.User, func(context.Context, func(float64)) (any, error) {
		// This daemon already serves the vPool; adding it again changes nothing.
		return map[string]any{"storagedrivers_guids": []string{driver}}, nil
	})
	if serr != nil {
		return nil, serr
	}
	return rpc.Started{TaskID: rec.UUID, Body: rec}, nil
}
