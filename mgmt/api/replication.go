package api

import (
	"net/http"
	"strconv"
)

// Replication is a relation: a vPool of this zone replicated to a vPool of
// a backup zone, with its status.
type Replication struct {
	Seq       int    `json:"seq"`
	VPool     string `json:"vpool"`
	VPoolName string `json:"vpool_name"`
	DstZone   string `json:"dst_zone"`
	DstVPool  string `json:"dst_vpool"`
	Interval  int    `json:"interval_s"`
	Retention int    `json:"retention"`
	Paused    bool   `json:"paused"`
	Status    string `json:"status"` // initializing, active, lagging, paused, broken
	Reason    string `json:"reason,omitempty"`
	LagS      int64  `json:"lag_s"`
	Bytes     uint64 `json:"bytes_shipped"`
	LastError string `json:"last_error,omitempty"`
	Created   string `json:"created"`
}

// ReplicationRef names a relation by its seq.
type ReplicationRef struct {
	Seq string `path:"seq" doc:"the relation's seq"`
}

// Number is the seq as a number.
func (r ReplicationRef) Number() (int, *Error) {
	n, err := strconv.Atoi(r.Seq)
	if err != nil || n <= 0 {
		return 0, InvalidValue("seq", r.Seq, "must be a positive integer")
	}
	return n, nil
}

// Validate checks the seq.
func (r ReplicationRef) Validate() *Error {
	_, err := r.Number()
	return err
}

// ReplicationListArgs page the relations.
type ReplicationListArgs struct {
	PageArgs
}

// ReplicationCreateArgs create a relation.
type ReplicationCreateArgs struct {
	VPool     string `json:"vpool" required:"true" doc:"this zone's vPool (guid or name)"`
	DstZone   string `json:"dst_zone" required:"true" doc:"the backup zone: a registered peer zone"`
	DstVPool  string `json:"dst_vpool" required:"true" doc:"the vPool in the backup zone"`
	IntervalS int    `json:"interval_s" doc:"the RPO: seconds between cycles (10 to 604800; default 300)"`
	Retention int    `json:"retention" doc:"replica snapshots kept beyond the newest (0 to 1000; default 7)"`
}

// Replication calls.
var (
	ReplicationList = declare[ReplicationListArgs](RPC{Class: "replication", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/replications", Role: ReadOnly, Summary: "List the replication relations, each with its status.",
		Returns: "a list of relations"})
	ReplicationGet = declare[ReplicationRef](RPC{Class: "replication", Call: "get", Methods: []string{http.MethodGet},
		Path: "/api/replications/{seq}", Role: ReadOnly, Summary: "Read one relation and its status.",
		Returns: "the relation"})
	ReplicationCreate = declare[ReplicationCreateArgs](RPC{Class: "replication", Call: "create",
		Path: "/api/replications", Role: PoolAdmin, Status: http.StatusCreated,
		Summary: "Replicate a vPool of this zone to a vPool of a backup zone: every VDI, CBT-incremental over NBD, each interval.",
		Returns: "the new relation, with its seq"})
	ReplicationDelete = declare[ReplicationRef](RPC{Class: "replication", Call: "delete", Methods: []string{http.MethodDelete},
		Path: "/api/replications/{seq}", Role: PoolAdmin, Status: http.StatusNoContent,
		Summary: "Stop replicating; the replicas stay in the backup zone.", Returns: "nothing (204)"})
	ReplicationPause = declare[ReplicationRef](RPC{Class: "replication", Call: "pause",
		Path: "/api/replications/{seq}/pause", Role: PoolAdmin, Summary: "Pause a relation: no cycle starts until it resumes.",
		Returns: "the relation"})
	ReplicationResume = declare[ReplicationRef](RPC{Class: "replication", Call: "resume",
		Path: "/api/replications/{seq}/resume", Role: PoolAdmin, Summary: "Resume a paused relation.",
		Returns: "the relation"})
	ReplicationSync = declare[ReplicationRef](RPC{Class: "replication", Call: "sync",
		Path: "/api/replications/{seq}/sync", Role: PoolAdmin,
		Summary: "Start a round now rather than at the next interval (within a second; one already running goes on). A paused relation refuses.",
		Returns: "the relation"})
)

// Replica is a replica snapshot this daemon holds: one point of a VDI of
// another zone, as a relation shipped it there. Zones answer for theirs,
// so kvol finds a snapshot's replicas while its origin is down.
type Replica struct {
	Snapshot        string `json:"snapshot"`   // the replica snapshot here
	VDI             string `json:"vdi"`        // the replica VDI it froze
	NameLabel       string `json:"name_label"` // the source VDI's name
	VPool           string `json:"vpool"`      // here
	VPoolName       string `json:"vpool_name"` // here
	VirtualSize     int64  `json:"virtual_size"`
	Created         string `json:"created"`    // when it was taken here
	Generation      int64  `json:"generation"` // orders the snapshots taken here, where clocks tie
	OriginZone      string `json:"origin_zone"`
	OriginVPool     string `json:"origin_vpool"`
	OriginVPoolName string `json:"origin_vpool_name"`
	OriginSeq       int    `json:"origin_seq"`
	OriginVDI       string `json:"origin_vdi"`
	OriginSnapshot  string `json:"origin_snapshot"`
}

// ReplicaListArgs filter the replica snapshots.
type ReplicaListArgs struct {
	OriginZone     string `query:"origin_zone" doc:"only those from this zone"`
	OriginVPool    string `query:"origin_vpool" doc:"only those of this vPool of the origin (guid or name)"`
	OriginVDI      string `query:"origin_vdi" doc:"only those of this VDI of the origin"`
	OriginSnapshot string `query:"origin_snapshot" doc:"only the replica of this snapshot of the origin"`
	PageArgs
}

// ReplicaList lists the replica snapshots held here.
var ReplicaList = declare[ReplicaListArgs](RPC{Class: "replica", Call: "list", Methods: []string{http.MethodGet},
	Path: "/api/replicas", Role: ReadOnly,
	Summary: "List the replica snapshots this zone holds for other zones, each with its origin (zone, vPool, relation, VDI, snapshot).",
	Returns: "a list of replica snapshots, oldest first"})
