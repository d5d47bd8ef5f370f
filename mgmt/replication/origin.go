package replication

import (
	"strconv"
)

// Origin is what a replica holds: which snapshot of which VDI of which
// vPool of which zone, shipped by which relation. Replica snapshots carry
// it in their sm_config (Tags), so the backup zone can answer for them
// (kvol's list, create and recovery) while the origin is down.
type Origin struct {
	Zone      string // the origin zone
	VPool     string // its vPool's guid there
	VPoolName string // and name
	Seq       int    // the relation, in the origin zone
	VDI       string // the source VDI
	Snapshot  string // the source snapshot (a replica VDI has none)
}

// The sm_config keys of a replica snapshot.
const (
	TagZone      = "replica_of_zone"
	TagVPool     = "replica_of_vpool"
	TagVPoolName = "replica_of_vpool_name"
	TagSeq       = "replica_of_seq"
	TagVDI       = "replica_of_vdi"
	TagSnapshot  = "replica_of_snapshot"
)

// Tags are o as a replica snapshot's sm_config.
func (o Origin) Tags() map[string]string {
	return map[string]string{TagZone: o.Zone, TagVPool: o.VPool, TagVPoolName: o.VPoolName,
		TagSeq: strconv.Itoa(o.Seq), TagVDI: o.VDI, TagSnapshot: o.Snapshot}
}

// OriginOf reads a replica snapshot's origin from its sm_config; ok is
// false for any other VDI. Snapshots shipped before the vPool and seq were
// tagged answer them empty and 0.
func OriginOf(smConfig map[string]string) (o Origin, ok bool) {
	o = Origin{Zone: smConfig[TagZone], VPool: smConfig[TagVPool], VPoolName: smConfig[TagVPoolName],
		VDI: smConfig[TagVDI], Snapshot: smConfig[TagSnapshot]}
	o.Seq, _ = strconv.Atoi(smConfig[TagSeq])
	return o, o.Zone != "" && o.VDI != "" && o.Snapshot != ""
}
