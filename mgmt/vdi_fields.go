package mgmt

import (
	"reflect"
	"slices"
	"strings"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// changeAttrs applies change to a copy of a VDI's attributes, stores them
// and answers the new record. op, if not empty, is checked first.
func (s *Server) changeAttrs(id, op string, change func(v vdi, a *vdiAttrs) *api.Error) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(id, op)
	if err != nil {
		return nil, err
	}
	if err := s.checkNotBusyLocked(v); err != nil {
		return nil, err
	}
	attrs := v.attrs.clone()
	if err := change(v, &attrs); err != nil {
		return nil, err
	}
	if _, err := s.store.SetAttrs(id, attrs.encode()); err != nil {
		return nil, storeError(err, id, "set")
	}
	return s.recordLockedByID(id)
}

func (s *Server) vdiSetNameLabel(c *call, a *api.VDIStringValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error { x.NameLabel = a.Value; return nil })
}

func (s *Server) vdiSetNameDescription(c *call, a *api.VDIStringValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error { x.NameDescription = a.Value; return nil })
}

func (s *Server) vdiSetSharable(c *call, a *api.VDIBoolValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error { x.Sharable = a.Value; return nil })
}

func (s *Server) vdiSetAllowCaching(c *call, a *api.VDIBoolValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(v vdi, x *vdiAttrs) *api.Error {
		if len(s.vbds[a.UUID]) > 0 {
			return api.Conflict(api.CodeVDIInUse, []string{a.UUID, "set_allow_caching"}, "VDI %s is attached", a.UUID)
		}
		x.AllowCaching = a.Value
		return nil
	})
}

func (s *Server) vdiSetReadOnly(c *call, a *api.VDIBoolValue) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "")
	if err != nil {
		return nil, err
	}
	if err := s.checkNotBusyLocked(v); err != nil {
		return nil, err
	}
	if v.info.IsSnapshot() {
		return nil, api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + a.UUID}, "snapshots are always read-only")
	}
	if len(s.vbds[a.UUID]) > 0 {
		return nil, api.Conflict(api.CodeVDIInUse, []string{a.UUID, "set_read_only"}, "VDI %s is attached", a.UUID)
	}
	if _, err := s.store.SetReadOnly(a.UUID, a.Value); err != nil {
		return nil, storeError(err, a.UUID, "set_read_only")
	}
	return s.recordLockedByID(a.UUID)
}

// vdiSetOnBoot sets on_boot. reset takes a hidden snapshot now; every
// writable attach then starts from it (AttachVBD). Setting reset again
// moves that point to now, as XenServer's "state when this flag was last
// set".
func (s *Server) vdiSetOnBoot(c *call, a *api.VDIOnBootValue) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "set_on_boot")
	if err != nil {
		return nil, err
	}
	attrs := v.attrs.clone()
	switch {
	case a.Value == "reset" && v.info.Kind == blockstore.KindLive:
		if err := s.takeBaseLocked(a.UUID, attrs); err != nil {
			return nil, err
		}
	default:
		old := attrs.OnBootBase
		attrs.OnBoot, attrs.OnBootBase = a.Value, ""
		if _, err := s.store.SetAttrs(a.UUID, attrs.encode()); err != nil {
			return nil, storeError(err, a.UUID, "set_on_boot")
		}
		s.dropBaseLocked(old)
	}
	s.log.Info("VDI on_boot set", "vdi", a.UUID, "on_boot", a.Value, "by", c.user)
	return s.recordLockedByID(a.UUID)
}

// mapField returns the map of x that field names.
func mapField(x *vdiAttrs, field string) *map[string]string {
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

func (s *Server) setMap(field string) func(c *call, a *api.VDIMapValue) (any, error) {
	return func(c *call, a *api.VDIMapValue) (any, error) {
		return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error {
			*mapField(x, field) = a.Value
			return nil
		})
	}
}

func (s *Server) addToMap(field string) func(c *call, a *api.VDIKeyValue) (any, error) {
	return func(c *call, a *api.VDIKeyValue) (any, error) {
		return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error {
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

func (s *Server) removeFromMap(field string) func(c *call, a *api.VDIKey) (any, error) {
	return func(c *call, a *api.VDIKey) (any, error) {
		return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error {
			delete(*mapField(x, field), a.Key)
			return nil
		})
	}
}

func (s *Server) vdiSetTags(c *call, a *api.VDISetValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error { x.Tags = dedupe(a.Value); return nil })
}

func (s *Server) vdiAddTags(c *call, a *api.VDITagValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error {
		if !slices.Contains(x.Tags, a.Value) {
			if len(x.Tags) >= api.MaxEntries {
				return api.InvalidValue("tags", a.Value, "already %d tags", api.MaxEntries)
			}
			x.Tags = append(x.Tags, a.Value)
		}
		return nil
	})
}

func (s *Server) vdiRemoveTags(c *call, a *api.VDITagValue) (any, error) {
	return s.changeAttrs(a.UUID, "", func(_ vdi, x *vdiAttrs) *api.Error {
		x.Tags = slices.DeleteFunc(x.Tags, func(t string) bool { return t == a.Value })
		return nil
	})
}

// getField answers get_<field> from the record, so a getter can never
// disagree with get_record.
func (s *Server) getField(field string) func(c *call, a *api.VDIRef) (any, error) {
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
	return func(c *call, a *api.VDIRef) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		rec, err := s.recordLockedByID(a.UUID)
		if err != nil {
			return nil, err
		}
		return api.Value{Value: reflect.ValueOf(rec).Field(idx).Interface()}, nil
	}
}

// checkNotBusyLocked refuses field changes while an exclusive operation
// (anything but a copy reading the VDI) runs on it. REQUIRES: s.mu held.
func (s *Server) checkNotBusyLocked(v vdi) *api.Error {
	if s.copyTargets[v.info.ID] != "" {
		return api.Conflict(api.CodeOtherOperation, []string{"VDI", v.info.ID}, "VDI %s is being written by a copy", v.info.ID)
	}
	for _, op := range s.ops[v.info.ID] {
		if op != "copy" {
			return api.Conflict(api.CodeOtherOperation, []string{"VDI", v.info.ID}, "VDI %s is busy with %s", v.info.ID, op)
		}
	}
	return nil
}
