package api

import (
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/task"
)

// NullRef is XenAPI's null reference, used where a ref field points nowhere.
const NullRef = "OpaqueRef:NULL"

// VDI is the XenAPI VDI record (seed 003), every field. References to other
// objects are UUIDs: SR is a vPool guid, snapshot_of and snapshots are VDI
// UUIDs, VBDs are the UUIDs of current attachments.
type VDI struct {
	UUID                string            `json:"uuid"`
	NameLabel           string            `json:"name_label"`
	NameDescription     string            `json:"name_description"`
	AllowCaching        bool              `json:"allow_caching"`
	AllowedOperations   []string          `json:"allowed_operations"`
	CBTEnabled          bool              `json:"cbt_enabled"`
	CrashDumps          []string          `json:"crash_dumps"`
	CurrentOperations   map[string]string `json:"current_operations"`
	IsASnapshot         bool              `json:"is_a_snapshot"`
	IsToolsISO          bool              `json:"is_tools_iso"`
	Location            string            `json:"location"`
	Managed             bool              `json:"managed"`
	MetadataLatest      bool              `json:"metadata_latest"`
	MetadataOfPool      string            `json:"metadata_of_pool"`
	Missing             bool              `json:"missing"`
	OnBoot              string            `json:"on_boot"`
	OtherConfig         map[string]string `json:"other_config"`
	Parent              string            `json:"parent"`
	PhysicalUtilisation int64             `json:"physical_utilisation"`
	ReadOnly            bool              `json:"read_only"`
	Sharable            bool              `json:"sharable"`
	SMConfig            map[string]string `json:"sm_config"`
	SnapshotOf          string            `json:"snapshot_of"`
	SnapshotTime        time.Time         `json:"snapshot_time"`
	Snapshots           []string          `json:"snapshots"`
	SR                  string            `json:"SR"`
	StorageLock         bool              `json:"storage_lock"`
	Tags                []string          `json:"tags"`
	Type                string            `json:"type"`
	VBDs                []string          `json:"VBDs"`
	VirtualSize         int64             `json:"virtual_size"`
	XenstoreData        map[string]string `json:"xenstore_data"`
}

// VDITypes is XenAPI's vdi_type enum.
var VDITypes = []string{"system", "user", "ephemeral", "suspend", "crashdump", "ha_statefile",
	"metadata", "redo_log", "rrd", "pvs_cache", "cbt_metadata"}

// VDIOperations is XenAPI's vdi_operations enum.
var VDIOperations = []string{"clone", "copy", "resize", "resize_online", "snapshot", "mirror",
	"destroy", "forget", "update", "force_unlock", "generate_config", "enable_cbt", "disable_cbt",
	"data_destroy", "list_changed_blocks", "set_on_boot", "blocked", "revert_to", "revert_from"}

// OnBootModes is XenAPI's on_boot enum.
var OnBootModes = []string{"persist", "reset"}

// ChangedBlocks answers list_changed_blocks: XenAPI's base64 bitmap (block
// i at byte i>>3, mask 0x80>>(i&7)) plus what a reader needs to use it.
type ChangedBlocks struct {
	Bitmap        string `json:"bitmap"`
	Granularity   int    `json:"granularity"`
	ChangedBlocks int    `json:"changed_blocks"`
	VirtualSize   int64  `json:"virtual_size"`
}

// NBDInfo is XenAPI's vdi_nbd_server_info plus a ready-to-use URI.
type NBDInfo struct {
	ExportName string `json:"exportname"`
	Address    string `json:"address"`
	Port       int    `json:"port"`
	Cert       string `json:"cert"`
	Subject    string `json:"subject"`
	URI        string `json:"uri"`
}

// StatKeys are the counter keys of an OVS statistics object (seed 000).
// Each also appears with a _ps suffix, and the object carries a timestamp.
var StatKeys = []string{
	"operations", "data_read", "data_written", "data_transferred",
	"read_operations", "write_operations",
	"cache_hits", "sco_cache_hits", "sco_cache_misses",
	"cluster_cache_hits", "cluster_cache_misses",
	"metadata_store_hits", "metadata_store_misses",
	"backend_data_read", "backend_data_written",
	"backend_read_operations", "backend_write_operations",
}

// Statistics is an OVS statistics object: every StatKeys counter, its _ps
// rate and "timestamp" (Unix seconds).
type Statistics map[string]float64

// VPool is the OpenvStorage vPool object of seed 000, every field.
type VPool struct {
	GUID                string         `json:"guid"`
	Name                string         `json:"name"`
	Description         string         `json:"description"`
	Size                int64          `json:"size"`
	Login               *string        `json:"login"`
	Connection          *string        `json:"connection"`
	Metadata            map[string]any `json:"metadata"`
	RDMAEnabled         bool           `json:"rdma_enabled"`
	BackendType         string         `json:"backend_type"`
	Type                string         `json:"type"`
	Statistics          Statistics     `json:"statistics"`
	Status              string         `json:"status"`
	StoredData          int64          `json:"stored_data"`
	VMachinesGUIDs      []string       `json:"vmachines_guids"`
	VDisksGUIDs         []string       `json:"vdisks_guids"`
	StorageDriversGUIDs []string       `json:"storagedrivers_guids"`
}

// VPool statuses (OVS, 2016 on).
const (
	VPoolRunning  = "RUNNING"
	VPoolDeleting = "DELETING"
)

// BackendLocal is the one backend type: data in this daemon's store.
const BackendLocal = "LOCAL"

// StorageRouter is a node serving vPools: with vdiskd, the daemon itself.
type StorageRouter struct {
	GUID                string   `json:"guid"`
	Name                string   `json:"name"`
	IP                  string   `json:"ip"`
	Zone                string   `json:"zone"`
	NodeType            string   `json:"node_type"`
	VPoolsGUIDs         []string `json:"vpools_guids"`
	StorageDriversGUIDs []string `json:"storagedrivers_guids"`
}

// Task is a long call running in the background (package task).
type Task = task.Record

// Task statuses.
const (
	TaskPending   = task.Pending
	TaskSuccess   = task.Success
	TaskFailure   = task.Failure
	TaskCancelled = task.Cancelled
)

// User is an account of the API. Its password never leaves the server.
type User struct {
	Username string    `json:"username"`
	Role     Role      `json:"role"`
	Created  time.Time `json:"created"`
}

// Token answers /api/token.
type Token = auth.Token

// Paging is OVS's _paging block of a list.
type Paging struct {
	TotalItems  int `json:"total_items"`
	CurrentPage int `json:"current_page"`
	MaxPage     int `json:"max_page"`
	StartNumber int `json:"start_number"`
	EndNumber   int `json:"end_number"`
}

// List is the envelope of every list answer.
type List[T any] struct {
	Data   []T    `json:"data"`
	Paging Paging `json:"_paging"`
}

// Value wraps a single field's value (the get_<field> calls).
type Value struct {
	Value any `json:"value"`
}
