package vstats

import (
	"slices"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// Bindings pairs every call of vstatsapi.Table with its handler.
func (s *Surface) Bindings() []rpc.Binding {
	return []rpc.Binding{
		rpc.Bind(vstatsapi.SessionCreate, s.sessionCreate),
		rpc.Bind(vstatsapi.SessionGet, s.sessionGet),
		rpc.Bind(vstatsapi.SessionDelete, s.sessionDelete),
		rpc.Bind(vstatsapi.CounterList, s.counterList),
		rpc.Bind(vstatsapi.CounterGet, s.counterGet),
		rpc.Bind(vstatsapi.CounterMetadataList, s.counterMetadataList),
		rpc.Bind(vstatsapi.CounterMetadataDefault, s.counterMetadataDefault),
		rpc.Bind(vstatsapi.CounterMetadataGet, s.counterMetadataGet),
		rpc.Bind(vstatsapi.CounterSetList, s.counterSetList),
		rpc.Bind(vstatsapi.CounterSetGet, s.counterSetGet),
		rpc.Bind(vstatsapi.MetricList, s.metricList),
		rpc.Bind(vstatsapi.ProviderList, s.providerList),
		rpc.Bind(vstatsapi.RsrcTypeList, s.rsrcTypeList),
		rpc.Bind(vstatsapi.RsrcAddrSchemaList, s.rsrcAddrSchemaList),
		rpc.Bind(vstatsapi.RsrcAddrSchemaGet, s.rsrcAddrSchemaGet),
		rpc.Bind(vstatsapi.RsrcAddrList, s.rsrcAddrList),
		rpc.Bind(vstatsapi.RsrcAddrGet, s.rsrcAddrGet),
		rpc.Bind(vstatsapi.AcqSpecCreate, s.acqSpecCreate),
		rpc.Bind(vstatsapi.AcqSpecList, s.acqSpecList),
		rpc.Bind(vstatsapi.AcqSpecGet, s.acqSpecGet),
		rpc.Bind(vstatsapi.AcqSpecUpdate, s.acqSpecUpdate),
		rpc.Bind(vstatsapi.AcqSpecDelete, s.acqSpecDelete),
		rpc.Bind(vstatsapi.DataPointGet, s.dataPoints),
		rpc.Bind(vstatsapi.CacheSync, s.cacheSync),
	}
}

func (s *Surface) sessionCreate(c *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	t, err := s.opts.Auth.IssueToken(c.Principal)
	if err != nil {
		return nil, err
	}
	return t.Token, nil
}

func (s *Surface) sessionGet(c *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	return vstatsapi.Session{User: c.User}, nil
}

func (s *Surface) sessionDelete(c *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	return nil, s.opts.Auth.Logout(c.Token)
}

func counterRecord(c stats.Counter) vstatsapi.Counter {
	return vstatsapi.Counter{Cid: c.Cid, Metric: c.Metric, ResourceAddressSchema: c.Type}
}

func (s *Surface) counter(cid string) (stats.Counter, error) {
	c, ok := s.stats.CounterByCid(cid)
	if !ok {
		return stats.Counter{}, fault.Missing("counter", cid)
	}
	return c, nil
}

func (s *Surface) counterList(_ *rpc.Call, a *vstatsapi.CounterListArgs) (any, error) {
	if err := stats.CheckTypes("types", a.Types); err != nil {
		return nil, err
	}
	out := []vstatsapi.Counter{}
	for _, c := range s.stats.Counters() {
		if (a.Cid == "" || c.Cid == a.Cid) && (a.Metric == "" || c.Metric == a.Metric) &&
			(len(a.Types) == 0 || slices.Contains(a.Types, c.Type)) {
			out = append(out, counterRecord(c))
		}
	}
	return out, nil
}

func (s *Surface) counterGet(_ *rpc.Call, a *vstatsapi.CounterRef) (any, error) {
	c, err := s.counter(a.Cid)
	if err != nil {
		return nil, err
	}
	return counterRecord(c), nil
}

func message(id, text string) vstatsapi.Message {
	return vstatsapi.Message{ID: id, DefaultMessage: text, Args: []string{}}
}

func (s *Surface) metadata(c stats.Counter) vstatsapi.CounterMetadata {
	return vstatsapi.CounterMetadata{Cid: c.Cid, Mid: stats.Mid, Status: "DEFAULT", Type: c.Sample, Units: c.Units,
		Scale: c.Scale, Pid: s.opts.NodeGUID, UserInfo: &vstatsapi.UserInfo{
			Label:       message("vdiskd.counter."+c.Cid+".label", c.Label),
			Description: message("vdiskd.counter."+c.Cid+".description", c.Doc)}}
}

func (s *Surface) counterMetadataList(_ *rpc.Call, a *vstatsapi.CounterMetadataListArgs) (any, error) {
	c, err := s.counter(a.Cid)
	if err != nil {
		return nil, err
	}
	switch a.Status {
	case "", "DEFAULT":
		return []vstatsapi.CounterMetadata{s.metadata(c)}, nil
	case "CURRENT", "DEPRECATED", "EXPERIMENTAL", "REMOVED":
		return []vstatsapi.CounterMetadata{}, nil
	}
	return nil, fault.InvalidValue("status", a.Status, "must be DEFAULT, CURRENT, DEPRECATED, EXPERIMENTAL or REMOVED")
}

func (s *Surface) counterMetadataDefault(_ *rpc.Call, a *vstatsapi.CounterRef) (any, error) {
	c, err := s.counter(a.Cid)
	if err != nil {
		return nil, err
	}
	return []vstatsapi.CounterMetadata{s.metadata(c)}, nil
}

func (s *Surface) counterMetadataGet(_ *rpc.Call, a *vstatsapi.CounterMetadataRef) (any, error) {
	c, err := s.counter(a.Cid)
	if err != nil {
		return nil, err
	}
	if a.Mid != stats.Mid {
		return nil, fault.Missing("counter metadata", a.Cid+"/"+a.Mid)
	}
	return s.metadata(c), nil
}

func setRecord(set stats.CounterSet) vstatsapi.CounterSet {
	mid := stats.Mid
	out := vstatsapi.CounterSet{ID: set.ID, UserInfo: &vstatsapi.UserInfo{
		Label: message("vdiskd.counter_set."+set.ID+".label", set.ID), Description: message("vdiskd.counter_set."+set.ID+".description", set.Label)}}
	for _, cid := range set.Counters {
		out.Counters = append(out.Counters, stats.CidMid{Cid: cid, Mid: &mid})
	}
	return out
}

func (s *Surface) counterSetList(_ *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	out := []vstatsapi.CounterSet{}
	for _, set := range s.stats.CounterSets() {
		out = append(out, setRecord(set))
	}
	return out, nil
}

func (s *Surface) counterSetGet(_ *rpc.Call, a *vstatsapi.CounterSetRef) (any, error) {
	set, ok := s.stats.CounterSetByID(a.ID)
	if !ok {
		return nil, fault.Missing("counter set", a.ID)
	}
	return setRecord(set), nil
}

func (s *Surface) metricList(_ *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	out := []vstatsapi.Metric{}
	for _, m := range s.stats.Metrics() {
		out = append(out, vstatsapi.Metric{Metric: m})
	}
	return out, nil
}

func (s *Surface) providerList(_ *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	return []vstatsapi.Provider{{ID: s.opts.NodeGUID, IDValue: s.opts.NodeName, Type: "VDISKD", Scheme: "guid",
		Metadata: "zone " + s.opts.Zone, TrackingSN: 1}}, nil
}

func (s *Surface) rsrcTypeList(_ *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	out := []vstatsapi.RsrcType{}
	for _, t := range stats.ResourceTypes {
		out = append(out, vstatsapi.RsrcType{Type: t})
	}
	return out, nil
}

func schema(t string) vstatsapi.RsrcAddrSchema {
	return vstatsapi.RsrcAddrSchema{ID: t, Schema: []vstatsapi.RsrcIDDefinition{{Key: t, Type: t, QueryOptions: "EQUAL_ALL"}}}
}

func (s *Surface) rsrcAddrSchemaList(_ *rpc.Call, _ *vstatsapi.NoArgs) (any, error) {
	out := []vstatsapi.RsrcAddrSchema{}
	for _, t := range stats.ResourceTypes {
		out = append(out, schema(t))
	}
	return out, nil
}

func (s *Surface) rsrcAddrSchemaGet(_ *rpc.Call, a *vstatsapi.RsrcAddrSchemaRef) (any, error) {
	if !slices.Contains(stats.ResourceTypes, a.ID) {
		return nil, fault.Missing("resource address schema", a.ID)
	}
	return schema(a.ID), nil
}

// addr is a resource's address record.
func addr(t, id string) vstatsapi.RsrcAddr {
	eq := stats.PredicateEqual
	return vstatsapi.RsrcAddr{ID: stats.RID(t, id), ResourceIDs: []stats.RsrcID{{Type: &t, IDValue: id, Predicate: &eq}}}
}

// addrPageSize bounds a page of resource addresses.
const addrPageSize = 1000

func (s *Surface) rsrcAddrList(_ *rpc.Call, a *vstatsapi.RsrcAddrListArgs) (any, error) {
	if err := stats.CheckTypes("types", a.Types); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, r := range a.Rsrcs {
		t, id, ok := stats.ParseRID(r)
		if !ok {
			return nil, fault.InvalidValue("rsrcs", r, "must be type.<VDISK|VPOOL|NODE>=<id>")
		}
		want[stats.RID(t, id)] = true
	}
	var all []vstatsapi.RsrcAddr
	for _, t := range stats.ResourceTypes {
		if len(a.Types) > 0 && !slices.Contains(a.Types, t) {
			continue
		}
		for _, id := range s.stats.Resources(t) {
			if ad := addr(t, id); len(want) == 0 || want[ad.ID] {
				all = append(all, ad)
			}
		}
	}
	slices.SortFunc(all, func(x, y vstatsapi.RsrcAddr) int { return strings.Compare(x.ID, y.ID) })
	// The page token is the last address answered.
	out := vstatsapi.RsrcAddrs{RsrcAddrs: []vstatsapi.RsrcAddr{}}
	for _, ad := range all {
		if ad.ID <= a.Page {
			continue
		}
		if len(out.RsrcAddrs) == addrPageSize {
			out.Next = out.RsrcAddrs[len(out.RsrcAddrs)-1].ID
			break
		}
		out.RsrcAddrs = append(out.RsrcAddrs, ad)
	}
	return out, nil
}

func (s *Surface) rsrcAddrGet(_ *rpc.Call, a *vstatsapi.RsrcAddrRef) (any, error) {
	t, id, ok := stats.ParseRID(a.ID)
	if !ok || !slices.Contains(s.stats.Resources(t), id) {
		return nil, fault.Missing("resource address", a.ID)
	}
	return addr(t, id), nil
}

func (s *Surface) acqSpecCreate(c *rpc.Call, a *vstatsapi.AcqSpecCreateArgs) (any, error) {
	return s.stats.Create(a.Spec(), c.User)
}

func (s *Surface) acqSpecList(_ *rpc.Call, a *vstatsapi.AcqSpecListArgs) (any, error) {
	specs, next, err := s.stats.List(a.Page)
	if err != nil {
		return nil, err
	}
	return vstatsapi.AcqSpecs{AcqSpecs: specs, Next: next}, nil
}

func (s *Surface) acqSpecGet(_ *rpc.Call, a *vstatsapi.AcqSpecRef) (any, error) {
	return s.stats.Get(a.ID)
}

func (s *Surface) acqSpecUpdate(c *rpc.Call, a *vstatsapi.AcqSpecUpdateArgs) (any, error) {
	return nil, s.stats.Update(a.ID, a.Update(), c.User)
}

func (s *Surface) acqSpecDelete(c *rpc.Call, a *vstatsapi.AcqSpecRef) (any, error) {
	return nil, s.stats.Delete(a.ID, c.User)
}

func (s *Surface) dataPoints(_ *rpc.Call, a *vstatsapi.DataPointsArgs) (any, error) {
	pts, next, err := s.stats.Points(a.Query())
	if err != nil {
		return nil, err
	}
	return vstatsapi.DataPoints{DataPoints: pts, Next: next}, nil
}

func (s *Surface) cacheSync(_ *rpc.Call, a *vstatsapi.CacheSyncArgs) (any, error) {
	var start int64
	if a.StartEpoch != nil {
		start = *a.StartEpoch
	} else if a.Page == "" {
		return nil, fault.InvalidValue("start_epoch", "", "is required: 0 for a full sync, else the end_epoch of the last sync")
	}
	return s.stats.Sync(start, a.EndEpoch, a.Page)
}
