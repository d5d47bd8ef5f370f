// Package kvolapi is the contract of vdiskd's kvol surface (seed 001): the
// cross-zone disaster-recovery calls, as one table. The server mounts it
// (package kvol), vdiskctl builds its kvol commands from it, and
// docs/api.md is generated from it.
//
// In vdiskd a zone is a daemon (--zone), a volume type a vPool (its guid
// or name), a backup zone a peer that receives a relation's replicas.
// Every call is a GET with hyphenated query parameters, as the seed has
// them; create and recovery queue a job and answer its rowkey.
package kvolapi

import (
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Table is the kvol surface's calls.
var Table = rpc.NewTable("kvol")

// Class is the one class of the table.
const Class = "kvol"

func get[A any](call string, role auth.Role, summary, returns string) *rpc.Decl[A] {
	return rpc.Declare[A](Table, rpc.RPC{Class: Class, Call: call, Methods: []string{http.MethodGet},
		Path: "/api/kvol/" + call, Role: role, Summary: summary, Returns: returns})
}

// The calls.
var (
	List = get[ListArgs]("list", auth.ReadOnly,
		"Lists the backup zones of a vPool of a zone: one row per replication relation.",
		`{"backup":[{cluster_ip, name, seq, svm_ip, svm_name, zone_id}]}; 204 when there is none`)
	Show = get[ShowArgs]("show", auth.ReadOnly,
		"Shows each replication of a vPool of a zone to its backup zones, with its status.",
		`{"backup-detail":[{src-zone, src-vol-type-id, src-svm-name, src-path, dst-zone, dst-svm-name, dst-path, status}]}; 204 when there is none`)
	Create = get[CreateArgs]("create", auth.VMAdmin,
		"Queues a job making a volume in dst-zone (this daemon's) from the replica of a snapshot: "+
			"a clone when the replica is here in the same vPool, else a copy (over NBD from the backup zone holding it).",
		`{"message": "snapshot volume creating ...", "rowkey": N}; 204 when no zone that answers holds a replica of the snapshot`)
	CreateList = get[JobListArgs]("createlist", auth.ReadOnly,
		"Shows create jobs: one by rowkey, or the latest limit.",
		`{"clist":[{rowkey, status, result_msg, create_start, create_end, org_zone_id, org_snapshot_id, src_zone_id, src_svm_name, dst_zone_id, dst_svm_name, new_volume_id}]}; 204 when there is none`)
	Recovery = get[RecoveryArgs]("recovery", auth.VMAdmin,
		"Queues a job recovering a volume of a failed zone into dst-zone (this daemon's) from its newest replicated "+
			"snapshot in any backup zone that answers; the origin zone is never asked.",
		`{"message": "recovery volume creating ...", "rowkey": N}; 204 when no zone that answers holds a replica of the volume`)
	RecoveryList = get[JobListArgs]("recoverylist", auth.ReadOnly,
		"Shows recovery jobs: one by rowkey, or the latest limit.",
		`{"clist":[{rowkey, status, result_msg, create_start, create_end, org_zone_id, org_volume_id, src_zone_id, src_svm_name, dst_zone_id, dst_svm_name, new_volume_id}]}; 204 when there is none`)
)
