package api

import (
	"net/http"
	"reflect"
	"strings"
)

// VDIRef names one VDI.
type VDIRef struct {
	UUID string `path:"uuid" doc:"the VDI"`
}

// VDIListArgs filter a VDI list.
type VDIListArgs struct {
	NameLabel string `query:"name_label" doc:"only VDIs with this name_label (get_by_name_label)"`
	SR        string `query:"SR" doc:"only VDIs in this vPool (guid or name)"`
	Tag       string `query:"tag" doc:"only VDIs carrying this tag"`
	PageArgs
}

// VDICreateArgs are VDI.create's constructor arguments.
type VDICreateArgs struct {
	NameLabel       string            `json:"name_label" doc:"a human-readable name"`
	NameDescription string            `json:"name_description" doc:"a notes field"`
	VirtualSize     int64             `json:"virtual_size" required:"true" doc:"size in bytes, rounded up to 2 MiB"`
	SR              string            `json:"SR" doc:"vPool guid or name (default: the default vPool)" xenapi:"ref=SR"`
	Type            string            `json:"type" doc:"vdi_type (default user)"`
	Sharable        bool              `json:"sharable" doc:"may be attached by several clients"`
	ReadOnly        bool              `json:"read_only" doc:"may only be attached read-only"`
	OtherConfig     map[string]string `json:"other_config" doc:"additional configuration"`
	SMConfig        map[string]string `json:"sm_config" doc:"storage-specific data"`
	XenstoreData    map[string]string `json:"xenstore_data" doc:"data for the guest's xenstore"`
	Tags            []string          `json:"tags" doc:"user tags"`
	ReplicaOf       string            `json:"replica_of" doc:"zone/vdi: make it the replica of that VDI, which only the caller may write, resize or destroy (vdiskd's replicator)"`
}

// Validate checks the constructor arguments.
func (a VDICreateArgs) Validate() *Error {
	e := firstError(checkName("name_label", a.NameLabel), checkName("name_description", a.NameDescription),
		CheckSize("virtual_size", a.VirtualSize), checkMap("other_config", a.OtherConfig),
		checkMap("sm_config", a.SMConfig), checkMap("xenstore_data", a.XenstoreData), checkTags("tags", a.Tags))
	if e == nil && a.Type != "" {
		e = checkEnum("type", a.Type, VDITypes)
	}
	if zone, vdi, ok := strings.Cut(a.ReplicaOf, "/"); e == nil && a.ReplicaOf != "" &&
		(!ok || !nameRE.MatchString(zone) || vdi == "" || len(vdi) > 255 || strings.Contains(vdi, "/")) {
		e = InvalidValue("replica_of", a.ReplicaOf, "must be zone/vdi")
	}
	return e
}

// VDIDriverParamsArgs are snapshot's and clone's arguments.
type VDIDriverParamsArgs struct {
	UUID         string            `path:"uuid" doc:"the VDI"`
	DriverParams map[string]string `json:"driver_params" doc:"passed through to the backend (recorded in sm_config)"`
}

// Validate checks the map.
func (a VDIDriverParamsArgs) Validate() *Error { return checkMap("driver_params", a.DriverParams) }

// VDICopyArgs are VDI.copy's arguments.
type VDICopyArgs struct {
	UUID    string `path:"uuid" doc:"the VDI to copy"`
	SR      string `json:"sr" doc:"destination vPool for a fresh VDI (default: the source's)" xenapi:"ref=SR"`
	BaseVDI string `json:"base_vdi" doc:"copy only the blocks that differ from this VDI" xenapi:"ref=VDI"`
	IntoVDI string `json:"into_vdi" doc:"write into this existing VDI instead of a fresh one" xenapi:"ref=VDI"`
}

// VDIResizeArgs are VDI.resize's arguments.
type VDIResizeArgs struct {
	UUID string `path:"uuid" doc:"the VDI"`
	Size int64  `json:"size" required:"true" doc:"new size in bytes (rounded up to 2 MiB; shrinking is refused)"`
}

// Validate checks the size.
func (a VDIResizeArgs) Validate() *Error { return CheckSize("size", a.Size) }

// VDIChangedBlocksArgs are list_changed_blocks' arguments; the path names
// vdi_to.
type VDIChangedBlocksArgs struct {
	UUID    string `path:"uuid" doc:"vdi_to: a later snapshot of the chain, or the VDI itself"`
	VDIFrom string `query:"vdi_from" required:"true" doc:"the older snapshot"`
}

// VDIPoolMigrateArgs are pool_migrate's arguments.
type VDIPoolMigrateArgs struct {
	UUID    string            `path:"uuid" doc:"the VDI"`
	SR      string            `json:"sr" required:"true" doc:"destination vPool (guid or name)" xenapi:"ref=SR"`
	Options map[string]string `json:"options" doc:"other parameters (none are used)"`
}

// Validate checks the options.
func (a VDIPoolMigrateArgs) Validate() *Error { return checkMap("options", a.Options) }

// VDIIntroduceArgs are VDI.introduce's arguments: they bring back the
// record of a VDI whose data the store still holds (after forget).
type VDIIntroduceArgs struct {
	UUIDArg             string            `json:"uuid" required:"true" doc:"UUID of the disk to introduce"`
	NameLabel           string            `json:"name_label" doc:"a human-readable name (default: kept from before forget)"`
	NameDescription     string            `json:"name_description" doc:"a notes field"`
	SR                  string            `json:"SR" doc:"the vPool the disk is in (default: the one that holds it)" xenapi:"ref=SR"`
	Type                string            `json:"type" doc:"vdi_type (default user)"`
	Sharable            *bool             `json:"sharable" doc:"may be attached by several clients (default: as before)"`
	ReadOnly            *bool             `json:"read_only" doc:"may only be attached read-only (default: as before)"`
	OtherConfig         map[string]string `json:"other_config" doc:"additional configuration"`
	Location            string            `json:"location" doc:"where the data is: the UUID (default)"`
	XenstoreData        map[string]string `json:"xenstore_data" doc:"data for the guest's xenstore"`
	SMConfig            map[string]string `json:"sm_config" doc:"storage-specific data"`
	Managed             *bool             `json:"managed" doc:"must be true if given"`
	VirtualSize         int64             `json:"virtual_size" doc:"ignored: the store knows it"`
	PhysicalUtilisation int64             `json:"physical_utilisation" doc:"ignored: measured"`
	MetadataOfPool      string            `json:"metadata_of_pool" doc:"the pool whose metadata the VDI holds"`
	IsASnapshot         bool              `json:"is_a_snapshot" doc:"must match the store if true"`
	SnapshotTime        string            `json:"snapshot_time" doc:"RFC 3339" xenapi:"time"`
	SnapshotOf          string            `json:"snapshot_of" doc:"must match the store if given" xenapi:"ref"`
}

// Validate checks the text and maps.
func (a VDIIntroduceArgs) Validate() *Error {
	e := firstError(checkName("name_label", a.NameLabel), checkName("name_description", a.NameDescription),
		checkMap("other_config", a.OtherConfig), checkMap("sm_config", a.SMConfig),
		checkMap("xenstore_data", a.XenstoreData), checkName("location", a.Location))
	if e == nil && a.Type != "" {
		e = checkEnum("type", a.Type, VDITypes)
	}
	if e == nil && a.VirtualSize < 0 {
		e = InvalidValue("virtual_size", "negative", "must not be negative")
	}
	if e == nil && a.PhysicalUtilisation < 0 {
		e = InvalidValue("physical_utilisation", "negative", "must not be negative")
	}
	return e
}

// VDIStringValue sets a text field.
type VDIStringValue struct {
	UUID  string `path:"uuid" doc:"the VDI"`
	Value string `json:"value" required:"true" doc:"the new value"`
}

// Validate checks the text.
func (a VDIStringValue) Validate() *Error { return checkName("value", a.Value) }

// VDITagValue adds or removes one tag.
type VDITagValue struct {
	UUID  string `path:"uuid" doc:"the VDI"`
	Value string `json:"value" required:"true" doc:"the tag"`
}

// Validate checks the tag.
func (a VDITagValue) Validate() *Error { return checkKey("value", a.Value) }

// VDIBoolValue sets a flag.
type VDIBoolValue struct {
	UUID  string `path:"uuid" doc:"the VDI"`
	Value bool   `json:"value" required:"true" doc:"the new value"`
}

// VDIMapValue replaces a map field.
type VDIMapValue struct {
	UUID  string            `path:"uuid" doc:"the VDI"`
	Value map[string]string `json:"value" required:"true" doc:"the new map"`
}

// Validate checks the map.
func (a VDIMapValue) Validate() *Error { return checkMap("value", a.Value) }

// VDISetValue replaces the tags.
type VDISetValue struct {
	UUID  string   `path:"uuid" doc:"the VDI"`
	Value []string `json:"value" required:"true" doc:"the new set"`
}

// Validate checks the tags.
func (a VDISetValue) Validate() *Error { return checkTags("value", a.Value) }

// VDIKeyValue adds one map entry.
type VDIKeyValue struct {
	UUID  string `path:"uuid" doc:"the VDI"`
	Key   string `json:"key" required:"true" doc:"key to add"`
	Value string `json:"value" required:"true" doc:"value to add"`
}

// Validate checks key and value.
func (a VDIKeyValue) Validate() *Error {
	return checkMap("key", map[string]string{a.Key: a.Value})
}

// VDIKey removes one map entry.
type VDIKey struct {
	UUID string `path:"uuid" doc:"the VDI"`
	Key  string `json:"key" required:"true" doc:"key to remove"`
}

// Validate checks the key.
func (a VDIKey) Validate() *Error { return checkKey("key", a.Key) }

// VDIOnBootValue sets on_boot.
type VDIOnBootValue struct {
	UUID  string `path:"uuid" doc:"the VDI"`
	Value string `json:"value" required:"true" doc:"persist or reset"`
}

// Validate checks the enum.
func (a VDIOnBootValue) Validate() *Error { return checkEnum("value", a.Value, OnBootModes) }

const vdiPath = "/api/vdis/{uuid}"

func vdiCall[A any](call string, role Role, summary, returns string) *Decl[A] {
	return vdiCallStatus[A](call, role, http.StatusOK, summary, returns)
}

func vdiCallStatus[A any](call string, role Role, status int, summary, returns string) *Decl[A] {
	return declare[A](RPC{Class: "VDI", Call: call, Path: vdiPath + "/" + call, Role: role,
		XenAPI: []string{call}, Summary: summary, Returns: returns, Status: status})
}

const (
	retRecord = "the VDI's record"
	retNew    = "the new VDI's record"
)

// The VDI calls (seed 003).
var (
	VDIList = declare[VDIListArgs](RPC{Class: "VDI", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/vdis", Role: ReadOnly, XenAPI: []string{"get_all", "get_all_records", "get_by_name_label"},
		Summary: "List VDI records, optionally filtered by name_label, SR or tag.", Returns: "a list of VDI records"})
	VDIGet = declare[VDIRef](RPC{Class: "VDI", Call: "get", Methods: []string{http.MethodGet},
		Path: vdiPath, Role: ReadOnly, XenAPI: []string{"get_record", "get_by_uuid"},
		Summary: "Read one VDI record.", Returns: retRecord})
	VDICreate = declare[VDICreateArgs](RPC{Class: "VDI", Call: "create", Path: "/api/vdis", Role: VMAdmin,
		XenAPI: []string{"create"}, Status: http.StatusCreated,
		Summary: "Create an empty thin VDI.", Returns: retNew})
	VDIDestroy = declare[VDIRef](RPC{Class: "VDI", Call: "destroy", Methods: []string{http.MethodDelete},
		Path: vdiPath, Role: VMAdmin, XenAPI: []string{"destroy"}, Status: http.StatusNoContent,
		Summary: "Destroy the VDI; blocks no other VDI shares are freed.", Returns: "nothing (204)"})
	VDIIntroduce = declare[VDIIntroduceArgs](RPC{Class: "VDI", Call: "introduce", Path: "/api/vdis/introduce",
		Role: VMAdmin, XenAPI: []string{"introduce"}, Status: http.StatusCreated,
		Summary: "Bring back the record of a forgotten VDI whose data the store still holds.", Returns: retNew})
	VDIForget = vdiCallStatus[VDIRef]("forget", VMAdmin, http.StatusNoContent,
		"Remove the VDI's record only; its data stays until introduce brings it back.", "nothing (204)")
	VDISnapshot = vdiCall[VDIDriverParamsArgs]("snapshot", VMAdmin,
		"Take a read-only snapshot, O(1) in the data the VDI holds.", "the snapshot's record")
	VDIClone = vdiCall[VDIDriverParamsArgs]("clone", VMAdmin,
		"Make a writable VDI sharing every block with this one; no data is copied.", retNew)
	VDICopy = vdiCallStatus[VDICopyArgs]("copy", VMAdmin, http.StatusAccepted,
		"Copy all blocks, or only those that differ from base_vdi, into a fresh VDI or into_vdi. Runs as a task.",
		"a task whose result is the destination VDI's record")
	VDIResize = vdiCall[VDIResizeArgs]("resize", VMAdmin,
		"Grow the VDI (not while attached); shrinking is refused.", retRecord)
	VDIResizeOnline = vdiCall[VDIResizeArgs]("resize_online", VMAdmin,
		"Grow the VDI, also while attached.", retRecord)
	VDIEnableCBT = vdiCall[VDIRef]("enable_cbt", VMAdmin,
		"Track changed blocks; the next snapshot is the first usable base. Idempotent.", retRecord)
	VDIDisableCBT = vdiCall[VDIRef]("disable_cbt", VMAdmin,
		"Stop tracking; the chain is broken for good. Idempotent.", retRecord)
	VDIListChangedBlocks = declare[VDIChangedBlocksArgs](RPC{Class: "VDI", Call: "list_changed_blocks",
		Methods: []string{http.MethodGet, http.MethodPost}, Path: vdiPath + "/list_changed_blocks", Role: VMOperator,
		XenAPI: []string{"list_changed_blocks"}, Returns: "bitmap, granularity, changed_blocks, virtual_size",
		Summary: "The 64 KiB blocks written after snapshot vdi_from up to this VDI, as XenAPI's base64 bitmap."})
	VDIDataDestroy = vdiCall[VDIRef]("data_destroy", VMAdmin,
		"Free a CBT snapshot's data, keep its changed-block metadata; type becomes cbt_metadata. Idempotent.", retRecord)
	VDIPoolMigrate = vdiCallStatus[VDIPoolMigrateArgs]("pool_migrate", VMPowerAdmin, http.StatusAccepted,
		"Move the VDI and its snapshots to another vPool; the CBT chain stays usable. Runs as a task.",
		"a task whose result is the VDI's record")
	VDIUpdate  = vdiCall[VDIRef]("update", VMAdmin, "Refresh the fields measured from the store.", retRecord)
	VDINBDInfo = declare[VDIRef](RPC{Class: "VDI", Call: "nbd_info", Methods: []string{http.MethodGet},
		Path: vdiPath + "/nbd_info", Role: VMAdmin, XenAPI: []string{"get_nbd_info"},
		Summary: "How to reach the VDI over NBD: one record per listening address.", Returns: "a JSON array of NBD info records"})
	VDIStatistics = declare[VDIRef](RPC{Class: "VDI", Call: "statistics", Methods: []string{http.MethodGet},
		Path: vdiPath + "/statistics", Role: ReadOnly,
		Summary: "OVS vDisk statistics: every counter of seed 000 with its _ps rate.", Returns: "a statistics object"})
	VDIOpenDatabase = vdiCall[VDIRef]("open_database", PoolOperator,
		"Load pool metadata from a metadata VDI. vdiskd keeps no XenServer pool databases, so this always fails.",
		"an error: COULD_NOT_IMPORT_DATABASE or VDI_INCOMPATIBLE_TYPE")
	VDIReadDatabasePoolUUID = declare[VDIRef](RPC{Class: "VDI", Call: "read_database_pool_uuid",
		Methods: []string{http.MethodGet, http.MethodPost}, Path: vdiPath + "/read_database_pool_uuid", Role: ReadOnly,
		XenAPI: []string{"read_database_pool_uuid"}, Returns: `{"value": ""}`,
		Summary: "The pool UUID cached for a metadata VDI: always empty, as xapi answers on a cache miss."})

	VDISetNameLabel       = vdiCall[VDIStringValue]("set_name_label", VMAdmin, "Set name_label.", retRecord)
	VDISetNameDescription = vdiCall[VDIStringValue]("set_name_description", VMAdmin, "Set name_description.", retRecord)
	VDISetReadOnly        = vdiCall[VDIBoolValue]("set_read_only", VMAdmin, "Set read_only (not on snapshots, not while attached).", retRecord)
	VDISetSharable        = vdiCall[VDIBoolValue]("set_sharable", VMAdmin, "Set sharable.", retRecord)
	VDISetAllowCaching    = vdiCall[VDIBoolValue]("set_allow_caching", VMAdmin, "Set allow_caching (not while attached).", retRecord)
	VDISetOnBoot          = vdiCall[VDIOnBootValue]("set_on_boot", VMAdmin,
		"Set on_boot. reset: every writable NBD attach starts from the content at this moment.", retRecord)
	VDISetOtherConfig  = vdiCall[VDIMapValue]("set_other_config", VMAdmin, "Replace other_config.", retRecord)
	VDISetSMConfig     = vdiCall[VDIMapValue]("set_sm_config", VMAdmin, "Replace sm_config.", retRecord)
	VDISetXenstoreData = vdiCall[VDIMapValue]("set_xenstore_data", VMAdmin, "Replace xenstore_data.", retRecord)
	VDISetTags         = vdiCall[VDISetValue]("set_tags", VMOperator, "Replace tags.", retRecord)

	VDIAddTags                = vdiCall[VDITagValue]("add_tags", VMOperator, "Add a tag; present already is a no-op.", retRecord)
	VDIRemoveTags             = vdiCall[VDITagValue]("remove_tags", VMOperator, "Remove a tag; absent is a no-op.", retRecord)
	VDIAddToOtherConfig       = vdiCall[VDIKeyValue]("add_to_other_config", VMAdmin, "Add a key; an existing key is MAP_DUPLICATE_KEY.", retRecord)
	VDIRemoveFromOtherConfig  = vdiCall[VDIKey]("remove_from_other_config", VMAdmin, "Remove a key; absent is a no-op.", retRecord)
	VDIAddToSMConfig          = vdiCall[VDIKeyValue]("add_to_sm_config", VMAdmin, "Add a key; an existing key is MAP_DUPLICATE_KEY.", retRecord)
	VDIRemoveFromSMConfig     = vdiCall[VDIKey]("remove_from_sm_config", VMAdmin, "Remove a key; absent is a no-op.", retRecord)
	VDIAddToXenstoreData      = vdiCall[VDIKeyValue]("add_to_xenstore_data", VMAdmin, "Add a key; an existing key is MAP_DUPLICATE_KEY.", retRecord)
	VDIRemoveFromXenstoreData = vdiCall[VDIKey]("remove_from_xenstore_data", VMAdmin, "Remove a key; absent is a no-op.", retRecord)
)

// VDIGetter is a get_<field> call: one per field of the VDI record.
type VDIGetter struct {
	*Decl[VDIRef]
	Field string // the record's JSON name
}

// VDIGetters are XenAPI's field getters, derived from the VDI record so a
// new field gets its getter.
var VDIGetters = func() []VDIGetter {
	var out []VDIGetter
	t := reflect.TypeFor[VDI]()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		call := "get_" + name
		d := declare[VDIRef](RPC{Class: "VDI", Call: call, Methods: []string{http.MethodGet, http.MethodPost},
			Path: vdiPath + "/" + call, Role: ReadOnly, XenAPI: []string{call},
			Summary: "Read the " + name + " field.", Returns: `{"value": ...}`})
		out = append(out, VDIGetter{Decl: d, Field: name})
	}
	return out
}()
