package volume

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
)

// Attrs are what the service keeps of a VDI beyond what the block store
// knows. They ride in the volume's opaque attributes, so a VDI and its
// record are created, snapshotted and destroyed in one store batch.
//
// Each API surface has a namespace of its own: XenAPI's fields are typed
// (the VDI is XenAPI's object, and its operation rules read them); every
// other surface (cinder, kvol, ...) keeps an opaque JSON value under its
// name, which only it reads. So surfaces never collide.
type Attrs struct {
	Xen       XenAttrs
	Lifecycle Lifecycle
	// Surfaces are the other surfaces' namespaces, by name.
	Surfaces map[string]json.RawMessage
}

// XenAttrs are the XenAPI VDI fields the store does not know.
type XenAttrs struct {
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
}

// Lifecycle are the service's own marks on a volume.
type Lifecycle struct {
	// OnBootBase is the hidden snapshot an on_boot=reset VDI reverts to.
	OnBootBase string `json:"on_boot_base,omitempty"`
	// BaseOf marks a hidden on_boot base: the VDI it belongs to.
	BaseOf string `json:"base_of,omitempty"`
	// Forgotten records were removed by VDI.forget; the data stays.
	Forgotten bool `json:"forgotten,omitempty"`
	// Building names the task filling a fresh VDI; a restart destroys
	// VDIs still marked so.
	Building string `json:"building,omitempty"`
	// Group is the consistency group a live VDI belongs to; GroupSnapshot
	// the group snapshot a snapshot was taken in. Members are destroyed
	// with their group, never one by one.
	Group         string `json:"group,omitempty"`
	GroupSnapshot string `json:"group_snapshot,omitempty"`
	// ReplicaOf ("zone/vdi") marks a replica another zone's replicator
	// writes; only ReplicaOwner, its user here, may write, resize or
	// destroy it.
	ReplicaOf    string `json:"replica_of,omitempty"`
	ReplicaOwner string `json:"replica_owner,omitempty"`
}

// The namespaces of the encoding. "xen" and "vdiskd" are typed; any other
// key is a surface's.
const (
	nsXen       = "xen"
	nsLifecycle = "vdiskd"
)

// Encode is the stored form: one JSON object of namespaces. Only the
// service writes volumes' attributes; tests and tools may read or seed
// them.
func (a Attrs) Encode() []byte { return a.encode() }

func (a Attrs) encode() []byte {
	m := make(map[string]any, 2+len(a.Surfaces))
	for k, v := range a.Surfaces {
		m[k] = v
	}
	m[nsXen] = a.Xen
	if a.Lifecycle != (Lifecycle{}) {
		m[nsLifecycle] = a.Lifecycle
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("volume: encoding attributes: %v", err))
	}
	return b
}

// decodeAttrs reads the stored form. Volumes written before namespaces
// hold one flat object of the XenAPI and lifecycle fields; they read the
// same, and are rewritten namespaced at their next change.
func decodeAttrs(b []byte) (Attrs, error) {
	var a Attrs
	if len(bytes.TrimSpace(b)) == 0 {
		return a, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return a, fmt.Errorf("volume: attributes: %w", err)
	}
	x, namespaced := m[nsXen]
	if !namespaced {
		if err := json.Unmarshal(b, &a.Xen); err != nil {
			return a, fmt.Errorf("volume: attributes (unnamespaced): %w", err)
		}
		if err := json.Unmarshal(b, &a.Lifecycle); err != nil {
			return a, fmt.Errorf("volume: attributes (unnamespaced): %w", err)
		}
		return a, nil
	}
	if err := json.Unmarshal(x, &a.Xen); err != nil {
		return a, fmt.Errorf("volume: attributes %q: %w", nsXen, err)
	}
	if l, ok := m[nsLifecycle]; ok {
		if err := json.Unmarshal(l, &a.Lifecycle); err != nil {
			return a, fmt.Errorf("volume: attributes %q: %w", nsLifecycle, err)
		}
	}
	delete(m, nsXen)
	delete(m, nsLifecycle)
	if len(m) > 0 {
		a.Surfaces = m
	}
	return a, nil
}

// Clone copies the maps and slices, so the copy can change alone.
func (a Attrs) Clone() Attrs {
	a.Xen = a.Xen.Clone()
	a.Surfaces = maps.Clone(a.Surfaces)
	return a
}

// Clone copies the maps and slices.
func (x XenAttrs) Clone() XenAttrs {
	x.OtherConfig = maps.Clone(x.OtherConfig)
	x.SMConfig = maps.Clone(x.SMConfig)
	x.XenstoreData = maps.Clone(x.XenstoreData)
	x.Tags = slices.Clone(x.Tags)
	return x
}

// VDIType is the record's type: cbt_metadata once the data is gone, user
// by default.
func (x XenAttrs) VDIType(kind blockstore.Kind) string {
	switch {
	case kind == blockstore.KindCBTMetadata:
		return "cbt_metadata"
	case x.Type == "":
		return "user"
	}
	return x.Type
}

// OnBootMode is on_boot, persist by default.
func (x XenAttrs) OnBootMode() string {
	if x.OnBoot == "" {
		return "persist"
	}
	return x.OnBoot
}

// Visible reports whether the volume is shown as a VDI: not forgotten and
// not a hidden on_boot base.
func (l Lifecycle) Visible() bool { return !l.Forgotten && l.BaseOf == "" }
