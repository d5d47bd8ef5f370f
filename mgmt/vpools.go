package mgmt

import (
	"context"
	"net"
	"slices"
	"syscall"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// vpoolRecordLocked builds the OVS vPool object. REQUIRES: s.mu held.
func (s *Server) vpoolRecordLocked(p *poolState, vols []blockstore.VolumeInfo) api.VPool {
	meta := map[string]any{"backend_type": api.BackendLocal, "local_connection_path": s.storePath()}
	for k, v := range p.Metadata {
		if _, reserved := meta[k]; !reserved {
			meta[k] = v
		}
	}
	vdisks := []string{}
	for _, v := range vols {
		if v.Pool == p.GUID && parseAttrs(v.Attrs).visible() {
			vdisks = append(vdisks, v.ID)
		}
	}
	stored, err := s.store.PoolUsage(p.GUID)
	if err != nil {
		s.log.Warn("measuring a vPool failed", "pool", p.Name, "err", err)
	}
	size := p.Size
	if size == 0 {
		size = s.filesystemSize()
	}
	return api.VPool{
		GUID: p.GUID, Name: p.Name, Description: p.Description, Size: size, Metadata: meta,
		BackendType: api.BackendLocal, Type: api.BackendLocal, Statistics: s.vpoolStatistics(p.GUID, vols),
		Status: api.VPoolRunning, StoredData: int64(stored), VMachinesGUIDs: []string{},
		VDisksGUIDs: vdisks, StorageDriversGUIDs: []string{p.StorageDriver},
	}
}

func (s *Server) storePath() string { return s.opts.DataDir }

// filesystemSize is the capacity of the data directory's filesystem: the
// size of a vPool created with size 0.
func (s *Server) filesystemSize() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.opts.DataDir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * st.Bsize
}

func (s *Server) poolRef(ref string) (*poolState, *api.Error) {
	p := s.st.pool(ref)
	if p == nil {
		return nil, api.NotFound("vPool", ref)
	}
	return p, nil
}

func (s *Server) vpoolList(c *call, a *api.VPoolListArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vols := s.store.Volumes()
	out := make([]api.VPool, 0, len(s.st.Pools))
	for _, p := range s.st.Pools {
		out = append(out, s.vpoolRecordLocked(p, vols))
	}
	return page(out, a.PageArgs, "name")
}

func (s *Server) vpoolGet(c *call, a *api.VPoolRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.poolRef(a.GUID)
	if err != nil {
		return nil, err
	}
	return s.vpoolRecordLocked(p, s.store.Volumes()), nil
}

func (s *Server) vpoolCreate(c *call, a *api.VPoolCreateArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.st.Pools {
		if p.Name == a.Name {
			return nil, api.Conflict(api.CodeNameTaken, []string{"vPool", a.Name}, "a vPool named %q exists", a.Name)
		}
	}
	p := &poolState{GUID: uuid.NewString(), Name: a.Name, Description: a.Description, Size: a.Size,
		Metadata: a.Metadata, StorageDriver: uuid.NewString(), Created: s.opts.Now().UTC()}
	s.st.Pools = append(s.st.Pools, p)
	if err := s.saveLocked(); err != nil {
		s.st.Pools = s.st.Pools[:len(s.st.Pools)-1]
		return nil, err
	}
	s.log.Info("vPool created", "pool", p.Name, "guid", p.GUID, "by", c.user)
	return created{location: "/api/vpools/" + p.GUID, body: s.vpoolRecordLocked(p, s.store.Volumes())}, nil
}

func (s *Server) vpoolDelete(c *call, a *api.VPoolRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.poolRef(a.GUID)
	if err != nil {
		return nil, err
	}
	if p.Default {
		return nil, api.Conflict(api.CodeOperationNotAllowed, []string{"the default vPool cannot be deleted"},
			"vPool %s is the default; VDIs created without SR go there", p.Name)
	}
	held, hidden := 0, 0
	for _, v := range s.store.Volumes() {
		if v.Pool == p.GUID {
			held++
			if !parseAttrs(v.Attrs).visible() {
				hidden++
			}
		}
	}
	if held > 0 {
		return nil, api.Conflict(api.CodeSRNotEmpty, []string{p.GUID},
			"vPool %s holds %d volumes (%d of them forgotten VDIs or on_boot bases); destroy or migrate them first", p.Name, held, hidden)
	}
	pools := s.st.Pools
	s.st.Pools = slices.DeleteFunc(slices.Clone(pools), func(x *poolState) bool { return x == p })
	if err := s.saveLocked(); err != nil {
		s.st.Pools = pools
		return nil, err
	}
	s.log.Info("vPool deleted", "pool", p.Name, "by", c.user)
	return nil, nil
}

// vpoolConfiguration is get_configuration: OVS's keys where this design
// has the concept, with their true values; no SCOs or DTL exist here.
func (s *Server) vpoolConfiguration(c *call, a *api.VPoolRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.poolRef(a.GUID)
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

func (s *Server) storageRouter() api.StorageRouter {
	pools, drivers := []string{}, []string{}
	for _, p := range s.st.Pools {
		pools = append(pools, p.GUID)
		drivers = append(drivers, p.StorageDriver)
	}
	ip := s.opts.Address
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return api.StorageRouter{GUID: s.st.Node.GUID, Name: s.opts.NodeName, IP: ip, Zone: s.opts.Zone,
		NodeType: "MASTER", VPoolsGUIDs: pools, StorageDriversGUIDs: drivers}
}

func (s *Server) vpoolStorageRouters(c *call, a *api.VPoolRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.poolRef(a.GUID); err != nil {
		return nil, err
	}
	return page([]api.StorageRouter{s.storageRouter()}, api.PageArgs{}, "name")
}

func (s *Server) vpoolSyncVMachines(c *call, a *api.VPoolRef) (any, error) {
	s.mu.Lock()
	p, err := s.poolRef(a.GUID)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.tasks.start(newTaskID(), "vPool.sync_vmachines", p.GUID, c.user, func(ctx context.Context, t *task) (any, error) {
		// No hypervisor inventory: there is nothing to sync, and saying so
		// beats inventing vMachines.
		return map[string]any{"vmachines_guids": []string{}}, nil
	})
}

// vpoolUpdateStorageDrivers validates against the one StorageRouter and
// StorageDriver that exist, then runs the (empty) change as a task.
func (s *Server) vpoolUpdateStorageDrivers(c *call, a *api.VPoolUpdateStorageDriversArgs) (any, error) {
	s.mu.Lock()
	p, err := s.poolRef(a.GUID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	node, driver := s.st.Node.GUID, p.StorageDriver
	s.mu.Unlock()
	for _, r := range a.StorageRouterGUIDs {
		if r != node {
			return nil, api.NotFound("StorageRouter", r)
		}
	}
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
	return s.tasks.start(newTaskID(), "vPool.update_storagedrivers", p.GUID, c.user, func(ctx context.Context, t *task) (any, error) {
		// This daemon already serves the vPool; adding it again changes nothing.
		return map[string]any{"storagedrivers_guids": []string{driver}}, nil
	})
}
