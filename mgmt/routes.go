package mgmt

import "github.com/vdiskd/vdiskd/mgmt/api"

// bindings pairs every call declared in package api with its handler.
// Handler panics at start-up if one is missing, and a test checks it too.
func (s *Server) bindings() []binding {
	bs := []binding{
		bind(api.TokenCreate, s.login),
		bind(api.TokenDelete, s.logout),
		bind(api.UserList, s.userList),
		bind(api.UserGet, s.userGet),
		bind(api.UserCreate, s.userCreate),
		bind(api.UserUpdate, s.userUpdate),
		bind(api.UserDelete, s.userDelete),
		bind(api.TaskList, s.taskList),
		bind(api.TaskGet, s.taskGet),
		bind(api.TaskCancel, s.taskCancel),

		bind(api.VPoolList, s.vpoolList),
		bind(api.VPoolGet, s.vpoolGet),
		bind(api.VPoolCreate, s.vpoolCreate),
		bind(api.VPoolDelete, s.vpoolDelete),
		bind(api.VPoolGetConfiguration, s.vpoolConfiguration),
		bind(api.VPoolStorageRouters, s.vpoolStorageRouters),
		bind(api.VPoolSyncVMachines, s.vpoolSyncVMachines),
		bind(api.VPoolUpdateStorageDrivers, s.vpoolUpdateStorageDrivers),

		bind(api.VDIList, s.vdiList),
		bind(api.VDIIntroduce, s.vdiIntroduce),
		bind(api.VDIGet, s.vdiGet),
		bind(api.VDICreate, s.vdiCreate),
		bind(api.VDIDestroy, s.vdiDestroy),
		bind(api.VDIForget, s.vdiForget),
		bind(api.VDISnapshot, s.vdiSnapshot),
		bind(api.VDIClone, s.vdiClone),
		bind(api.VDICopy, s.vdiCopy),
		bind(api.VDIResize, s.vdiResize),
		bind(api.VDIResizeOnline, s.vdiResizeOnline),
		bind(api.VDIEnableCBT, s.vdiEnableCBT),
		bind(api.VDIDisableCBT, s.vdiDisableCBT),
		bind(api.VDIListChangedBlocks, s.vdiListChangedBlocks),
		bind(api.VDIDataDestroy, s.vdiDataDestroy),
		bind(api.VDIPoolMigrate, s.vdiPoolMigrate),
		bind(api.VDIUpdate, s.vdiUpdate),
		bind(api.VDINBDInfo, s.vdiNBDInfo),
		bind(api.VDIStatistics, s.vdiStatistics),
		bind(api.VDIOpenDatabase, s.vdiOpenDatabase),
		bind(api.VDIReadDatabasePoolUUID, s.vdiReadDatabasePoolUUID),

		bind(api.VDISetNameLabel, s.vdiSetNameLabel),
		bind(api.VDISetNameDescription, s.vdiSetNameDescription),
		bind(api.VDISetReadOnly, s.vdiSetReadOnly),
		bind(api.VDISetSharable, s.vdiSetSharable),
		bind(api.VDISetAllowCaching, s.vdiSetAllowCaching),
		bind(api.VDISetOnBoot, s.vdiSetOnBoot),
		bind(api.VDISetOtherConfig, s.setMap("other_config")),
		bind(api.VDISetSMConfig, s.setMap("sm_config")),
		bind(api.VDISetXenstoreData, s.setMap("xenstore_data")),
		bind(api.VDISetTags, s.vdiSetTags),
		bind(api.VDIAddTags, s.vdiAddTags),
		bind(api.VDIRemoveTags, s.vdiRemoveTags),
		bind(api.VDIAddToOtherConfig, s.addToMap("other_config")),
		bind(api.VDIRemoveFromOtherConfig, s.removeFromMap("other_config")),
		bind(api.VDIAddToSMConfig, s.addToMap("sm_config")),
		bind(api.VDIRemoveFromSMConfig, s.removeFromMap("sm_config")),
		bind(api.VDIAddToXenstoreData, s.addToMap("xenstore_data")),
		bind(api.VDIRemoveFromXenstoreData, s.removeFromMap("xenstore_data")),
	}
	for _, g := range api.VDIGetters {
		bs = append(bs, bind(g.Decl, s.getField(g.Field)))
	}
	return bs
}
