package xenrest

import (
	"reflect"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

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
