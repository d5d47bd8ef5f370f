// Package vstatsapi is the contract of vdiskd's vStats surface (issue 19,
// seed 004): vSphere's Automation API sessions and the vStats calls
// (/api/stats/...) over vdiskd's counters, as one table. The server mounts
// it (package vstats), vdiskctl builds its stats commands from it, and
// docs/api.md is generated from it. The model's types are the service's
// (package stats), with vStats' JSON names.
package vstatsapi

import (
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Table is the vStats surface's calls.
var Table = rpc.NewTable("vStats")

// Classes: the session, and every stats call.
const (
	ClassSession = "vsphere_session"
	ClassStats   = "stats"
)

func get[A any](call, path string, summary, returns string) *rpc.Decl[A] {
	return rpc.Declare[A](Table, rpc.RPC{Class: ClassStats, Call: call, Methods: []string{http.MethodGet},
		Path: "/api/stats" + path, Role: auth.ReadOnly, Summary: summary, Returns: returns})
}

// The calls.
var (
	SessionCreate = rpc.Declare[NoArgs](Table, rpc.RPC{Class: ClassSession, Call: "create", Path: "/api/session",
		Auth: rpc.AuthPassword, Role: auth.ReadOnly, Status: http.StatusCreated,
		Summary: "Log in with Basic user:password, as vSphere's Automation API: the answer is the session id to send as vmware-api-session-id (a vdiskd token).",
		Returns: `the session id, a JSON string (201)`})
	SessionGet = rpc.Declare[NoArgs](Table, rpc.RPC{Class: ClassSession, Call: "get", Methods: []string{http.MethodGet},
		Path: "/api/session", Role: auth.ReadOnly, Summary: "Who the session is.",
		Returns: `{user, created_time, last_accessed_time}`})
	SessionDelete = rpc.Declare[NoArgs](Table, rpc.RPC{Class: ClassSession, Call: "delete", Methods: []string{http.MethodDelete},
		Path: "/api/session", Role: auth.ReadOnly, Status: http.StatusNoContent,
		Summary: "Log out: the session id (the token) stops working, and its NBD connections end.", Returns: "nothing (204)"})

	CounterList = get[CounterListArgs]("counter_list", "/counters",
		"List the counters: each a metric on a resource type (vdisk.data_read), documented in its metadata.",
		`[{cid, metric, resource_address_schema}]`)
	CounterGet          = get[CounterRef]("counter_get", "/counters/{cid}", "One counter.", `{cid, metric, resource_address_schema}`)
	CounterMetadataList = get[CounterMetadataListArgs]("counter_metadata_list", "/counters/{cid}/metadata",
		"A counter's metadata editions (one: mid 1, DEFAULT).",
		`[{cid, mid, status, type, units, scale?, user_info:{label, description}, pid}]`)
	CounterMetadataDefault = get[CounterRef]("counter_metadata_default", "/counters/{cid}/metadata/default",
		"A counter's default metadata.", `[{cid, mid, status, type, units, scale?, user_info, pid}]`)
	CounterMetadataGet = get[CounterMetadataRef]("counter_metadata_get", "/counters/{cid}/metadata/{mid}",
		"One edition of a counter's metadata.", `{cid, mid, status, type, units, scale?, user_info, pid}`)
	CounterSetList = get[NoArgs]("counter_set_list", "/counter-sets",
		"List the counter sets a spec may name (set_id).", `[{id, counters:[{cid, mid}], user_info}]`)
	CounterSetGet = get[CounterSetRef]("counter_set_get", "/counter-sets/{counter_set}", "One counter set.",
		`{id, counters:[{cid, mid}], user_info}`)
	MetricList   = get[NoArgs]("metric_list", "/metrics", "List the metrics.", `[{metric}]`)
	ProviderList = get[NoArgs]("provider_list", "/providers", "The providers: this daemon.",
		`[{id, id_value, type, scheme, metadata, tracking_sn}]`)
	RsrcTypeList       = get[NoArgs]("rsrc_type_list", "/rsrc-types", "The resource types: VDISK, VPOOL, NODE.", `[{type}]`)
	RsrcAddrSchemaList = get[NoArgs]("rsrc_addr_schema_list", "/rsrc-addr-schemas",
		"The resource address schemas, one per resource type.", `[{id, schema:[{key, type, query_options}]}]`)
	RsrcAddrSchemaGet = get[RsrcAddrSchemaRef]("rsrc_addr_schema_get", "/rsrc-addr-schemas/{id}",
		"One resource address schema.", `{id, schema:[{key, type, query_options}]}`)
	RsrcAddrList = get[RsrcAddrListArgs]("rsrc_addr_list", "/rsrc-addrs",
		"List the resources there are now, by address (type.VDISK=<uuid>).", `{rsrc_addrs:[{id, resource_ids:[...]}], next?}`)
	RsrcAddrGet = get[RsrcAddrRef]("rsrc_addr_get", "/rsrc-addrs/{id}", "One resource address.",
		`{id, resource_ids:[{type, id_value, predicate}]}`)

	AcqSpecCreate = rpc.Declare[AcqSpecCreateArgs](Table, rpc.RPC{Class: ClassStats, Call: "acq_spec_create",
		Methods: []string{http.MethodPost}, Path: "/api/stats/acq-specs", Role: auth.VMAdmin, Status: http.StatusCreated,
		Summary: "Start sampling counters on resources at an interval until an expiration (vStats' acquisition specification). A trailing slash is taken, as vSphere clients send it.",
		Returns: `the new spec's id, a JSON string (201)`})
	AcqSpecList = get[AcqSpecListArgs]("acq_spec_list", "/acq-specs", "List the specs, a page at a time (next).",
		`{acq_specs:[{id, counters, resources, interval, expiration, memo_, endpoints, status, status_reason?}], next?}`)
	AcqSpecGet = get[AcqSpecRef]("acq_spec_get", "/acq-specs/{id}", "One spec.",
		`{id, counters, resources, interval, expiration, memo_, endpoints, status, status_reason?}`)
	AcqSpecUpdate = rpc.Declare[AcqSpecUpdateArgs](Table, rpc.RPC{Class: ClassStats, Call: "acq_spec_update",
		Methods: []string{http.MethodPatch}, Path: "/api/stats/acq-specs/{id}", Role: auth.VMAdmin, Status: http.StatusNoContent,
		Summary: "Change a spec: fields not given stay; an expired or disabled spec is enabled again.", Returns: "nothing (204)"})
	AcqSpecDelete = rpc.Declare[AcqSpecRef](Table, rpc.RPC{Class: ClassStats, Call: "acq_spec_delete",
		Methods: []string{http.MethodDelete}, Path: "/api/stats/acq-specs/{id}", Role: auth.VMAdmin, Status: http.StatusNoContent,
		Summary: "Stop a spec; its data points stay until their retention passes.", Returns: "nothing (204)"})

	DataPointGet = get[DataPointsArgs]("data_points", "/data/dp",
		"The data points the specs sampled in [start, end), by counter, metric, resource type or resource.",
		`{data_points:[{cid, mid, rid, ts, val}], next?}`)
	CacheSync = get[CacheSyncArgs]("cache_sync", "/cache/sync",
		"What a client's cache of the specs must apply to catch up: created, updated and deleted (ids) in (start_epoch, end_epoch]; start_epoch 0 is a full sync.",
		`{created_acq_specs:[...], updated_acq_specs:[...], deleted_acq_specs:[id], next?}`)
)
