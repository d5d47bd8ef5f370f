// Package stats is vdiskd's statistics subscriptions (issue 19, seed 004:
// VMware's vStats model): a catalogue of counters over vdiskd's real
// measurements, acquisition specs saying which counters to sample on
// which resources how often and until when, the sampler that stores their
// data points, and the change log (created, updated, deleted at stamped
// seconds) that lets clients keep a cache of the specs in sync.
//
// It is a service: no HTTP. The vStats surface (mgmt/vstats) serves it;
// the composition root injects what it reads (the OVS statistics objects
// the REST surface answers, the NBD latencies /metrics exposes), so every
// surface shows one set of counters.
package stats

// The types below are vStats' own (com.vmware.vstats), with its JSON names.

// CidMid names a counter and, optionally, an edition of its metadata.
type CidMid struct {
	Cid string  `json:"cid"`
	Mid *string `json:"mid,omitempty"`
}

// CounterSpec names the counters of a spec: one (cid_mid) or a set.
type CounterSpec struct {
	CidMid *CidMid `json:"cid_mid,omitempty"`
	SetID  *string `json:"set_id,omitempty"`
}

// RsrcID names resources: one by id (EQUAL), or every one of a type (ALL).
type RsrcID struct {
	Key       *string `json:"key,omitempty"`  // the schema's id definition; unset: Type
	Type      *string `json:"type,omitempty"` // VDISK, VPOOL or NODE
	IDValue   string  `json:"id_value"`
	Predicate *string `json:"predicate,omitempty"` // EQUAL (default) or ALL
	Scheme    *string `json:"scheme,omitempty"`    // ignored: vdiskd's ids are uuids
}

// Spec is an acquisition specification as vStats answers it (Info).
type Spec struct {
	ID           string      `json:"id"`
	Counters     CounterSpec `json:"counters"`
	Resources    []RsrcID    `json:"resources"`
	Interval     int64       `json:"interval"`
	Expiration   int64       `json:"expiration"`
	Memo         string      `json:"memo_"`
	Endpoints    []string    `json:"endpoints"`
	Status       string      `json:"status"` // ENABLED, DISABLED, EXPIRED
	StatusReason string      `json:"status_reason,omitempty"`
}

// Spec states.
const (
	StatusEnabled  = "ENABLED"
	StatusDisabled = "DISABLED"
	StatusExpired  = "EXPIRED"
)

// Predicates.
const (
	PredicateEqual = "EQUAL"
	PredicateAll   = "ALL"
)

// CreateSpec asks for a spec (vStats' CreateSpec). Interval and
// Expiration 0 (or absent): the defaults.
type CreateSpec struct {
	Counters   CounterSpec `json:"counters"`
	Resources  []RsrcID    `json:"resources"`
	Interval   *int64      `json:"interval"`
	Expiration *int64      `json:"expiration"`
	Memo       *string     `json:"memo_"`
	Endpoints  []string    `json:"endpoints"`
}

// UpdateSpec changes a spec (vStats' UpdateSpec): unset fields stay.
type UpdateSpec struct {
	Counters   *CounterSpec `json:"counters"`
	Resources  []RsrcID     `json:"resources"`
	Interval   *int64       `json:"interval"`
	Expiration *int64       `json:"expiration"`
	Memo       *string      `json:"memo_"`
	Endpoints  []string     `json:"endpoints"`
}

// DataPoint is one sample of a counter on a resource (vStats' DataPoint).
type DataPoint struct {
	Cid string  `json:"cid"`
	Mid string  `json:"mid"`
	Rid string  `json:"rid"` // type.<TYPE>=<id>
	Ts  int64   `json:"ts"`  // Unix seconds
	Val float64 `json:"val"`
}
