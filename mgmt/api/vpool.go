package api

import (
	"fmt"
	"net/http"
	"regexp"
)

// VPoolRef names one vPool, by guid or name.
type VPoolRef struct {
	GUID string `path:"guid" doc:"the vPool's guid or name"`
}

// VPoolListArgs page a vPool list.
type VPoolListArgs struct {
	PageArgs
}

// VPoolCreateArgs create a vPool.
type VPoolCreateArgs struct {
	Name        string            `json:"name" required:"true" doc:"unique name: letters, digits, . _ - (1 to 64)"`
	Description string            `json:"description" doc:"free text"`
	BackendType string            `json:"backend_type" doc:"LOCAL (the only backend: a key space of this daemon's store)"`
	Size        int64             `json:"size" doc:"capacity in bytes for reporting; 0: the data filesystem's size"`
	Login       *string           `json:"login" doc:"backend login (null for LOCAL)"`
	Connection  *string           `json:"connection" doc:"backend connection (null for LOCAL)"`
	Metadata    map[string]string `json:"metadata" doc:"extra metadata entries"`
	RDMAEnabled bool              `json:"rdma_enabled" doc:"must be false: no RDMA"`
}

// nameRE is a vPool's or a zone's name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks the fields.
func (a VPoolCreateArgs) Validate() *Error {
	if !nameRE.MatchString(a.Name) {
		return InvalidValue("name", a.Name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if a.BackendType != "" && a.BackendType != BackendLocal {
		return InvalidValue("backend_type", a.BackendType, "must be %s", BackendLocal)
	}
	if a.Size < 0 || a.Size > 1<<60 {
		return InvalidValue("size", fmt.Sprint(a.Size), "must be 0 to 2^60 bytes")
	}
	if a.RDMAEnabled {
		return InvalidValue("rdma_enabled", "true", "vdiskd has no RDMA transport")
	}
	if a.Login != nil && *a.Login != "" || a.Connection != nil && *a.Connection != "" {
		return InvalidValue("login", "", "a LOCAL vPool takes no login or connection")
	}
	return firstError(checkName("description", a.Description), checkMap("metadata", a.Metadata))
}

// VPoolUpdateStorageDriversArgs are OVS's update_storagedrivers input.
type VPoolUpdateStorageDriversArgs struct {
	GUID               string   `path:"guid" doc:"the vPool"`
	StorageRouterGUIDs []string `json:"storagerouter_guids" doc:"StorageRouters to extend the vPool to"`
	StorageDriverGUID  string   `json:"storagedriver_guid" doc:"a StorageDriver of this vPool to use as blueprint"`
	StorageDriverGUIDs []string `json:"storagedriver_guids" doc:"StorageDrivers to remove"`
}

// Validate bounds the lists.
func (a VPoolUpdateStorageDriversArgs) Validate() *Error {
	return firstError(checkTags("storagerouter_guids", a.StorageRouterGUIDs), checkTags("storagedriver_guids", a.StorageDriverGUIDs))
}

const vpoolPath = "/api/vpools/{guid}"

// The vPool calls (seed 000).
var (
	VPoolList = declare[VPoolListArgs](RPC{Class: "vPool", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/vpools", Role: ReadOnly, Summary: "List vPools, sorted by name.", Returns: "a list of vPool objects"})
	VPoolGet = declare[VPoolRef](RPC{Class: "vPool", Call: "get", Methods: []string{http.MethodGet},
		Path: vpoolPath, Role: ReadOnly, Summary: "Read one vPool.", Returns: "the vPool object"})
	VPoolCreate = declare[VPoolCreateArgs](RPC{Class: "vPool", Call: "create", Path: "/api/vpools",
		Role: PoolOperator, Status: http.StatusCreated,
		Summary: "Create a LOCAL vPool: its own key space in this daemon's store.", Returns: "the new vPool object"})
	VPoolDelete = declare[VPoolRef](RPC{Class: "vPool", Call: "delete", Methods: []string{http.MethodDelete},
		Path: vpoolPath, Role: PoolOperator, Status: http.StatusNoContent,
		Summary: "Delete an empty vPool (SR_NOT_EMPTY while it holds VDIs; the default vPool stays).", Returns: "nothing (204)"})
	VPoolGetConfiguration = declare[VPoolRef](RPC{Class: "vPool", Call: "get_configuration",
		Methods: []string{http.MethodGet}, Path: vpoolPath + "/get_configuration", Role: ReadOnly,
		Summary: "The vPool's storage configuration, as this design has it.", Returns: "a configuration object"})
	VPoolStorageRouters = declare[VPoolRef](RPC{Class: "vPool", Call: "storagerouters",
		Methods: []string{http.MethodGet}, Path: vpoolPath + "/storagerouters", Role: ReadOnly,
		Summary: "The StorageRouters serving the vPool: this daemon.", Returns: "a list of StorageRouters"})
	VPoolSyncVMachines = declare[VPoolRef](RPC{Class: "vPool", Call: "sync_vmachines",
		Path: vpoolPath + "/sync_vmachines", Role: PoolOperator, Status: http.StatusAccepted,
		Summary: "Sync the vMachines of the vPool. vdiskd has no hypervisor inventory, so the task finds none.",
		Returns: "a task"})
	VPoolUpdateStorageDrivers = declare[VPoolUpdateStorageDriversArgs](RPC{Class: "vPool",
		Call: "update_storagedrivers", Path: vpoolPath + "/update_storagedrivers", Role: PoolOperator,
		Status: http.StatusAccepted, Returns: "a task",
		Summary: "Add or remove StorageDrivers. Only this daemon's exists; it can be neither added twice nor removed."})
)
