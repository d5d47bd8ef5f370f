package xenrest

import (
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// Bindings pairs every call declared in package api with its handler.
// Mounting panics at start-up if one is missing, and a test checks it too.
func (s *Surface) Bindings() []rpc.Binding {
	bs := []rpc.Binding{
		rpc.Bind(api.TokenCreate, s.login),
		rpc.Bind(api.TokenDelete, s.logout),
		rpc.Bind(api.UserList, s.userList),
		rpc.Bind(api.UserGet, s.userGet),
		rpc.Bind(api.UserCreate, s.userCreate),
		rpc.Bind(api.UserUpdate, s.userUpdate),
		rpc.Bind(api.UserDelete, s.userDelete),
		rpc.Bind(api.TaskList, s.taskList),
		rpc.Bind(api.TaskGet, s.taskGet),
		rpc.Bind(api.TaskCancel, s.taskCancel),
		rpc.Bind(api.NodeGet, s.nodeGet),
		rpc.Bind(api.ZoneList, s.zoneList),
		rpc.Bind(api.ZoneGet, s.zoneGet),
		rpc.Bind(api.ZoneCreate, s.zoneCreate),
		rpc.Bind(api.ZoneDelete, s.zoneDelete),
		rpc.Bind(api.ReplicationList, s.replicationList),
		rpc.Bind(api.ReplicationGet, s.replicationGet),
		rpc.Bind(api.ReplicationCreate, s.replicationCreate),
		rpc.Bind(api.ReplicationDelete, s.replicationDelete),
		rpc.Bind(api.ReplicationPause, s.replicationPause),
		rpc.Bind(api.ReplicationResume, s.replicationResume),
		rpc.Bind(api.ReplicationSync, s.replicationSync),
		rpc.Bind(api.ReplicaList, s.replicaList),

		rpc.Bind(api.VPoolList, s.vpoolList),
		rpc.Bind(api.VPoolGet, s.vpoolGet),
		rpc.Bind(api.VPoolCreate, s.vpoolCreate),
		rpc.Bind(api.VPoolDelete, s.vpoolDelete),
		rpc.Bind(api.VPoolGetConfiguration, s.vpoolConfiguration),
		rpc.Bind(api.VPoolStorageRouters, s.vpoolStorageRouters),
		rpc.Bind(api.VPoolSyncVMachines, s.vpoolSyncVMachines),
		rpc.Bind(api.VPoolUpdateStorageDrivers, s.vpoolUpdateStorageDrivers),

		rpc.Bind(api.VDIList, s.vdiList),
		rpc.Bind(api.VDIIntroduce, s.vdiIntroduce),
		rpc.Bind(api.VDIGet, s.vdiGet),
		rpc.Bind(api.VDICreate, s.vdiCreate),
		rpc.Bind(api.VDIDestroy, s.vdiDestroy),
		rpc.Bind(api.VDIForget, s.vdiForget),
		rpc.Bind(api.VDISnapshot, s.vdiSnapshot),
		rpc.Bind(api.VDIClone, s.vdiClone),
		rpc.Bind(api.VDICopy, s.vdiCopy),
		rpc.Bind(api.VDIResize, s.vdiResize),
		rpc.Bind(api.VDIResizeOnline, s.vdiResizeOnline),
		rpc.Bind(api.VDIEnableCBT, s.vdiEnableCBT),
		rpc.Bind(api.VDIDisableCBT, s.vdiDisableCBT),
		rpc.Bind(api.VDIListChangedBlocks, s.vdiListChangedBlocks),
		rpc.Bind(api.VDIDataDestroy, s.vdiDataDestroy),
		rpc.Bind(api.VDIPoolMigrate, s.vdiPoolMigrate),
		rpc.Bind(api.VDIUpdate, s.vdiUpdate),
		rpc.Bind(api.VDINBDInfo, s.vdiNBDInfo),
		rpc.Bind(api.VDIStatistics, s.vdiStatistics),
		rpc.Bind(api.VDIOpenDatabase, s.vdiOpenDatabase),
		rpc.Bind(api.VDIReadDatabasePoolUUID, s.vdiReadDatabasePoolUUID),
	}
	// The field calls (set_*, add_*, remove_*), shared with XenAPI's wire.
	for _, f := range xenrecord.FieldCalls {
		bs = append(bs, f.Bind(s.vols, answer))
	}
	for _, g := range api.VDIGetters {
		bs = append(bs, rpc.Bind(g.Decl, s.getField(g.Field)))
	}
	return bs
}
