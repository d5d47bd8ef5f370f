package vstatsapi

import (
	"github.com/vdiskd/vdiskd/mgmt/stats"
)

// NoArgs is a call without arguments.
type NoArgs struct{}

// CounterListArgs filter the counters.
type CounterListArgs struct {
	Cid    string   `query:"cid" doc:"only this counter"`
	Types  []string `query:"types" doc:"only counters of these resource types (VDISK, VPOOL, NODE)"`
	Metric string   `query:"metric" doc:"only counters of this metric"`
}

// CounterRef names a counter.
type CounterRef struct {
	Cid string `path:"cid" doc:"the counter: vdisk.data_read, vpool.operations_ps, node.nbd_read_latency_p99, ..."`
}

// CounterMetadataListArgs filter a counter's metadata.
type CounterMetadataListArgs struct {
	CounterRef
	Status string `query:"status" doc:"only editions of this status (DEFAULT, CURRENT, DEPRECATED, EXPERIMENTAL, REMOVED)"`
}

// CounterMetadataRef names an edition of a counter's metadata.
type CounterMetadataRef struct {
	CounterRef
	Mid string `path:"mid" doc:"the edition"`
}

// CounterSetRef names a counter set.
type CounterSetRef struct {
	ID string `path:"counter_set" doc:"the set"`
}

// RsrcAddrSchemaRef names a resource address schema.
type RsrcAddrSchemaRef struct {
	ID string `path:"id" doc:"the schema: a resource type"`
}

// RsrcAddrListArgs filter the resource addresses.
type RsrcAddrListArgs struct {
	Types []string `query:"types" doc:"only resources of these types"`
	Rsrcs []string `query:"rsrcs" doc:"only these resources: type.VDISK=<uuid>"`
	Page  string   `query:"page" doc:"the next of the previous page"`
}

// RsrcAddrRef names a resource address.
type RsrcAddrRef struct {
	ID string `path:"id" doc:"the address: type.VDISK=<uuid>"`
}

// AcqSpecRef names a spec.
type AcqSpecRef struct {
	ID string `path:"id" doc:"the spec's id"`
}

// AcqSpecListArgs page the specs.
type AcqSpecListArgs struct {
	Page string `query:"page" doc:"the next of the previous page"`
}

// AcqSpecCreateArgs are vStats' CreateSpec.
type AcqSpecCreateArgs struct {
	Counters   *stats.CounterSpec `json:"counters" required:"true" doc:"{\"cid_mid\": {\"cid\": ...}} or {\"set_id\": ...}"`
	Resources  []stats.RsrcID     `json:"resources" required:"true" doc:"[{\"type\": \"VDISK\", \"id_value\": <uuid>, \"predicate\": \"EQUAL\"}] (ALL: every one of the type)"`
	Interval   *int64             `json:"interval" doc:"seconds between samples (1 to 3600; default 10)"`
	Expiration *int64             `json:"expiration" doc:"Unix seconds when sampling ends (0: now + 100 minutes)"`
	Memo       *string            `json:"memo_" doc:"free text"`
	Endpoints  []string           `json:"endpoints" doc:"must be empty: vdiskd pushes to no endpoints"`
}

// Spec is the service's create request.
func (a AcqSpecCreateArgs) Spec() stats.CreateSpec {
	return stats.CreateSpec{Counters: *a.Counters, Resources: a.Resources, Interval: a.Interval,
		Expiration: a.Expiration, Memo: a.Memo, Endpoints: a.Endpoints}
}

// AcqSpecUpdateArgs are vStats' UpdateSpec: what is not given stays.
type AcqSpecUpdateArgs struct {
	AcqSpecRef
	Counters   *stats.CounterSpec `json:"counters" doc:"the new counters"`
	Resources  []stats.RsrcID     `json:"resources" doc:"the new resources"`
	Interval   *int64             `json:"interval" doc:"the new interval (seconds)"`
	Expiration *int64             `json:"expiration" doc:"the new expiration (Unix seconds; 0: now + 100 minutes)"`
	Memo       *string            `json:"memo_" doc:"the new memo"`
	Endpoints  []string           `json:"endpoints" doc:"must be empty"`
}

// Update is the service's update request.
func (a AcqSpecUpdateArgs) Update() stats.UpdateSpec {
	return stats.UpdateSpec{Counters: a.Counters, Resources: a.Resources, Interval: a.Interval,
		Expiration: a.Expiration, Memo: a.Memo, Endpoints: a.Endpoints}
}

// DataPointsArgs are vStats' data filter.
type DataPointsArgs struct {
	Start  *int64   `query:"start" doc:"from (Unix seconds, included; default: as far back as points are kept)"`
	End    *int64   `query:"end" doc:"to (Unix seconds, excluded; default: now)"`
	Cid    string   `query:"cid" doc:"only this counter"`
	Metric string   `query:"metric" doc:"only counters of this metric"`
	Types  []string `query:"types" doc:"only resources of these types"`
	Rsrcs  []string `query:"rsrcs" doc:"only these resources: type.VDISK=<uuid> (or type.VDISK.uuid=<uuid>)"`
	Order  string   `query:"order" doc:"DEFAULT: by time, then counter, then resource"`
	Page   string   `query:"page" doc:"the next of the previous page"`
}

// Query is the service's query.
func (a DataPointsArgs) Query() stats.Query {
	return stats.Query{Start: a.Start, End: a.End, Cid: a.Cid, Metric: a.Metric, Types: a.Types, Rsrcs: a.Rsrcs,
		Order: a.Order, Page: a.Page}
}

// CacheSyncArgs are seed 004's parameters.
type CacheSyncArgs struct {
	StartEpoch *int64 `query:"start_epoch" doc:"the end_epoch of the client's last sync; 0: a full sync"`
	EndEpoch   *int64 `query:"end_epoch" doc:"up to (Unix seconds; default: now)"`
	Page       string `query:"page" doc:"the next of the previous page (the window is the first page's)"`
}
