package mgmt

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// vdiAttrs are the XenAPI fields the block store does not know; they ride
// in the volume's opaque attributes, so they are committed in the same
// batch as the volume itself.
type vdiAttrs struct {
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description,omitempty"`
	Type            string            `json:"type,omitempty"` // default user
	Sharable        bool              `json:"sharable,omitempty"`
	OtherConfig     map[string]string `json:"other_config,omitempty"`
	SMConfig        map[string]string `json:"sm_config,omitempty"`
	XenstoreData    map[string]string `json:"xenstore_data,omitempty"`
	Tags            []string          `json:"tags,omitempty"`
	OnBoot          string            `json:"on_boot,omitempty"` // default persist
	AllowCaching    bool              `json:"allow_caching,omitempty"`
	SnapshotTime    time.Time         `json:"snapshot_time,omitzero"`
	MetadataOfPool  string            `json:"metadata_of_pool,omitempty"`

	// OnBootBase is the hidden snapshot an on_boot=reset VDI reverts to.
	OnBootBase string `json:"on_boot_base,omitempty"`
	// BaseOf marks a hidden on_boot base: the VDI it belongs to.
	BaseOf string `json:"base_of,omitempty"`
	// Forgotten records were removed by VDI.forget; the data stays.
	Forgotten bool `json:"forgotten,omitempty"`
	// Building names the task filling a fresh VDI; a restart destroys
	// VDIs still marked so.
	Building string `json:"building,omitempty"`
}

func parseAttrs(b []byte) vdiAttrs {
	var a vdiAttrs
	if len(b) > 0 {
		_ = json.Unmarshal(b, &a) // attrs are only ever written by encode
	}
	return a
}

func (a vdiAttrs) encode() []byte {
	b, err := json.Marshal(a)
	if err != nil {
		panic(err)
	}
	return b
}

func (a vdiAttrs) vdiType(kind blockstore.Kind) string {
	switch {
	case kind == blockstore.KindCBTMetadata:
		return "cbt_metadata"
	case a.Type == "":
		return "user"
	}
	return a.Type
}

func (a vdiAttrs) onBoot() string {
	if a.OnBoot == "" {
		return "persist"
	}
	return a.OnBoot
}

// visible reports whether the API shows the volume as a VDI.
func (a vdiAttrs) visible() bool { return !a.Forgotten && a.BaseOf == "" }

// clone copies the maps and slices.
func (a vdiAttrs) clone() vdiAttrs {
	a.OtherConfig = maps.Clone(a.OtherConfig)
	a.SMConfig = maps.Clone(a.SMConfig)
	a.XenstoreData = maps.Clone(a.XenstoreData)
	a.Tags = slices.Clone(a.Tags)
	return a
}

// vdi is a volume with its parsed attributes.
type vdi struct {
	info  blockstore.VolumeInfo
	attrs vdiAttrs
}

// world is one consistent look at every volume, to derive the fields that
// relate VDIs (snapshots).
type world struct {
	vols      map[string]vdi
	snapshots map[string][]string // VDI -> visible snapshots of it
}

func (s *Server) lookWorld() *world {
	w := &world{vols: map[string]vdi{}, snapshots: map[string][]string{}}
	for _, v := range s.store.Volumes() {
		a := parseAttrs(v.Attrs)
		w.vols[v.ID] = vdi{info: v, attrs: a}
		if v.SnapshotOf != "" && v.IsSnapshot() && a.visible() {
			w.snapshots[v.SnapshotOf] = append(w.snapshots[v.SnapshotOf], v.ID)
		}
	}
	return w
}

// vdi finds a visible VDI.
func (w *world) vdi(id string) (vdi, *api.Error) {
	v, ok := w.vols[id]
	if !ok || !v.attrs.visible() {
		return vdi{}, api.NotFound("VDI", id)
	}
	return v, nil
}

func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func orNull(ref string) string {
	if ref == "" {
		return api.NullRef
	}
	return ref
}

// record builds the XenAPI record. REQUIRES: s.mu held (VBDs, operations).
func (s *Server) recordLocked(w *world, v vdi) api.VDI {
	a, info := v.attrs, v.info
	phys, err := s.store.PhysicalUtilisation(info.ID)
	if err != nil {
		phys = 0 // destroyed meanwhile; the record is about to vanish anyway
	}
	snaps := slices.Clone(w.snapshots[info.ID])
	slices.Sort(snaps)
	st := s.opStateLocked(v)
	allowed := []string{}
	for _, op := range implementedOps {
		if checkOperation(st, op) == nil {
			allowed = append(allowed, op)
		}
	}
	vbds := []string{}
	for id := range s.vbds[info.ID] {
		vbds = append(vbds, id)
	}
	slices.Sort(vbds)
	snapshotOf := ""
	if info.IsSnapshot() {
		snapshotOf = info.SnapshotOf
	}
	tags := a.Tags
	if tags == nil {
		tags = []string{}
	}
	snapTime := a.SnapshotTime
	if snapTime.IsZero() {
		snapTime = time.Unix(0, 0).UTC()
	}
	return api.VDI{
		UUID: info.ID, NameLabel: a.NameLabel, NameDescription: a.NameDescription,
		AllowCaching: a.AllowCaching, AllowedOperations: allowed, CBTEnabled: info.CBTEnabled,
		CrashDumps: []string{}, CurrentOperations: maps.Clone(orEmpty(s.ops[info.ID])),
		IsASnapshot: info.IsSnapshot(), IsToolsISO: false, Location: info.ID, Managed: true,
		MetadataLatest: false, MetadataOfPool: orNull(a.MetadataOfPool), Missing: false,
		OnBoot: a.onBoot(), OtherConfig: orEmpty(a.OtherConfig), Parent: api.NullRef,
		PhysicalUtilisation: int64(phys), ReadOnly: info.ReadOnly, Sharable: a.Sharable,
		SMConfig: orEmpty(a.SMConfig), SnapshotOf: orNull(snapshotOf), SnapshotTime: snapTime,
		Snapshots: orSlice(snaps), SR: info.Pool, StorageLock: false, Tags: tags,
		Type: a.vdiType(info.Kind), VBDs: vbds, VirtualSize: int64(info.Size),
		XenstoreData: orEmpty(a.XenstoreData),
	}
}

func orSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
