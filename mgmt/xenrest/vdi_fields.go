package xenrest

import (
	"reflect"
	"slices"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// changeXen applies change to a VDI's XenAPI fields and answers the record.
func (s *Surface) changeXen(id string, change func(v volume.Volume, x *volume.XenAttrs) *fault.Error) (any, error) {
	return answer(s.vols.ChangeXen(id, change))
}

func (s *Surface) vdiSetNameLabel(c *rpc.Call, a *api.VDIStringValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error { x.NameLabel = a.Value; return nil })
}

func (s *Surface) vdiSetNameDescription(c *rpc.Call, a *api.VDIStringValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error { x.NameDescription = a.Value; return nil })
}

func (s *Surface) vdiSetSharable(c *rpc.Call, a *api.VDIBoolValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error { x.Sharable = a.Value; return nil })
}

func (s *Surface) vdiSetAllowCaching(c *rpc.Call, a *api.VDIBoolValue) (any, error) {
	return s.changeXen(a.UUID, func(v volume.Volume, x *volume.XenAttrs) *fault.Error {
		if v.Attached {
			return api.Conflict(api.CodeVDIInUse, []string{a.UUID, "set_allow_caching"}, "VDI %s is attached", a.UUID)
		}
		x.AllowCaching = a.Value
		return nil
	})
}

func (s *Surface) vdiSetReadOnly(c *rpc.Call, a *api.VDIBoolValue) (any, error) {
	return answer(s.vols.SetReadOnly(a.UUID, a.Value))
}

func (s *Surface) vdiSetOnBoot(c *rpc.Call, a *api.VDIOnBootValue) (any, error) {
	return answer(s.vols.SetOnBoot(a.UUID, a.Value, c.User))
}

// mapField returns the map of x that field names.
func mapField(x *volume.XenAttrs, field string) *map[string]string {
	switch field {
	case "other_config":
		return &x.OtherConfig
	case "sm_config":
		return &x.SMConfig
	case "xenstore_data":
		return &x.XenstoreData
	}
	panic("mgmt: no map field " + field)
}

func (s *Surface) setMap(field string) func(c *rpc.Call, a *api.VDIMapValue) (any, error) {
	return func(c *rpc.Call, a *api.VDIMapValue) (any, error) {
		return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error {
			*mapField(x, field) = a.Value
			return nil
		})
	}
}

func (s *Surface) addToMap(field string) func(c *rpc.Call, a *api.VDIKeyValue) (any, error) {
	return func(c *rpc.Call, a *api.VDIKeyValue) (any, error) {
		return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error {
			m := mapField(x, field)
			if _, dup := (*m)[a.Key]; dup {
				return api.Conflict(api.CodeMapDuplicateKey, []string{"VDI", field, a.UUID, a.Key},
					"%s already has key %q", field, a.Key)
			}
			if len(*m) >= api.MaxEntries {
				return api.InvalidValue(field, a.Key, "already %d entries", api.MaxEntries)
			}
			if *m == nil {
				*m = map[string]string{}
			}
			(*m)[a.Key] = a.Value
			return nil
		})
	}
}

func (s *Surface) removeFromMap(field string) func(c *rpc.Call, a *api.VDIKey) (any, error) {
	return func(c *rpc.Call, a *api.VDIKey) (any, error) {
		return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error {
			delete(*mapField(x, field), a.Key)
			return nil
		})
	}
}

func (s *Surface) vdiSetTags(c *rpc.Call, a *api.VDISetValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error { x.Tags = dedupe(a.Value); return nil })
}

func (s *Surface) vdiAddTags(c *rpc.Call, a *api.VDITagValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error {
		if !slices.Contains(x.Tags, a.Value) {
			if len(x.Tags) >= api.MaxEntries {
				return api.InvalidValue("tags", a.Value, "already %d tags", api.MaxEntries)
			}
			x.Tags = append(x.Tags, a.Value)
		}
		return nil
	})
}

func (s *Surface) vdiRemoveTags(c *rpc.Call, a *api.VDITagValue) (any, error) {
	return s.changeXen(a.UUID, func(_ volume.Volume, x *volume.XenAttrs) *fault.Error {
		x.Tags = slices.DeleteFunc(x.Tags, func(t string) bool { return t == a.Value })
		return nil
	})
}

// getField answers get_<field> from the record, so a getter can never
// disagree with get_record.
func (s *Surface) getField(field string) func(c *rpc.Call, a *api.VDIRef) (any, error) {
	idx := -1
	t := reflect.TypeFor[api.VDI]()
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == field {
			idx = i
		}
	}
	if idx < 0 {
		panic("mgmt: VDI record has no field " + field)
	}
	return func(c *rpc.Call, a *api.VDIRef) (any, error) {
		v, err := s.vols.Get(a.UUID)
		if err != nil {
			return nil, err
		}
		return api.Value{Value: reflect.ValueOf(record(v)).Field(idx).Interface()}, nil
	}
}
