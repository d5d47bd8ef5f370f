package vstatsapi

import "github.com/vdiskd/vdiskd/mgmt/stats"

// Counter is vStats' counter record.
type Counter struct {
	Cid                   string `json:"cid"`
	Metric                string `json:"metric"`
	ResourceAddressSchema string `json:"resource_address_schema"`
}

// Message is vSphere's localizable message.
type Message struct {
	ID             string   `json:"id"`
	DefaultMessage string   `json:"default_message"`
	Args           []string `json:"args"`
}

// UserInfo is a label and a description.
type UserInfo struct {
	Label       Message `json:"label"`
	Description Message `json:"description"`
}

// CounterMetadata is vStats' counter metadata record.
type CounterMetadata struct {
	Cid      string    `json:"cid"`
	Mid      string    `json:"mid"`
	Status   string    `json:"status"`
	Type     string    `json:"type"`
	Units    string    `json:"units"`
	Scale    string    `json:"scale,omitempty"`
	UserInfo *UserInfo `json:"user_info,omitempty"`
	Pid      string    `json:"pid"`
}

// CounterSet is vStats' counter set record.
type CounterSet struct {
	ID       string         `json:"id"`
	Counters []stats.CidMid `json:"counters"`
	UserInfo *UserInfo      `json:"user_info,omitempty"`
}

// Metric names a metric.
type Metric struct {
	Metric string `json:"metric"`
}

// Provider is vStats' provider summary: this daemon.
type Provider struct {
	ID         string `json:"id"`
	IDValue    string `json:"id_value"`
	Type       string `json:"type"`
	Scheme     string `json:"scheme,omitempty"`
	Metadata   string `json:"metadata,omitempty"`
	TrackingSN int64  `json:"tracking_sn"`
}

// RsrcType names a resource type.
type RsrcType struct {
	Type string `json:"type"`
}

// RsrcIDDefinition is one key of a resource address schema.
type RsrcIDDefinition struct {
	Key          string `json:"key"`
	Type         string `json:"type"`
	QueryOptions string `json:"query_options"` // EQUAL or EQUAL_ALL
}

// RsrcAddrSchema is vStats' resource address schema.
type RsrcAddrSchema struct {
	ID     string             `json:"id"`
	Schema []RsrcIDDefinition `json:"schema"`
}

// RsrcAddr is a resource's address.
type RsrcAddr struct {
	ID          string         `json:"id"`
	ResourceIDs []stats.RsrcID `json:"resource_ids"`
}

// RsrcAddrs is a page of addresses.
type RsrcAddrs struct {
	RsrcAddrs []RsrcAddr `json:"rsrc_addrs"`
	Next      string     `json:"next,omitempty"`
}

// AcqSpecs is a page of specs.
type AcqSpecs struct {
	AcqSpecs []stats.Spec `json:"acq_specs"`
	Next     string       `json:"next,omitempty"`
}

// DataPoints is a page of data points.
type DataPoints struct {
	DataPoints []stats.DataPoint `json:"data_points"`
	Next       string            `json:"next,omitempty"`
}

// Session is who a session is.
type Session struct {
	User             string `json:"user"`
	CreatedTime      string `json:"created_time"`
	LastAccessedTime string `json:"last_accessed_time"`
}

// ErrorBody is vSphere's error: {"error_type", "messages"}.
type ErrorBody struct {
	ErrorType string    `json:"error_type"`
	Messages  []Message `json:"messages"`
}
