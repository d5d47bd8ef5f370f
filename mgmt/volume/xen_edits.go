package volume

import (
	"slices"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// MaxEntries bounds a VDI's maps (other_config, sm_config, xenstore_data)
// and its tags, so one record never grows without end.
const MaxEntries = 256

// A XenEdit is one of XenAPI's setters or add_to_/remove_from_ calls on a
// VDI's fields: the rule and the change together, so every surface that
// offers the call (REST, XenAPI's wire) applies the same one through
// EditXen. Arguments are checked by the surface (package api's Validate);
// the edits check what depends on the VDI's state.
type XenEdit struct {
	call  string
	apply func(v Volume, x *XenAttrs) *fault.Error
}

// EditXen applies an edit to a VDI's XenAPI fields under its lock, stores
// them and answers the new state. Refused while an exclusive operation
// runs; a refused edit changes nothing.
func (s *Service) EditXen(id string, e XenEdit) (VDI, error) {
	return s.changeAttrs(id, func(v Volume, a *Attrs) *fault.Error { return e.apply(v, &a.Xen) })
}

// Call names the XenAPI call the edit is.
func (e XenEdit) Call() string { return e.call }

// SetNameLabel is VDI.set_name_label.
func SetNameLabel(value string) XenEdit {
	return XenEdit{"set_name_label", func(_ Volume, x *XenAttrs) *fault.Error { x.NameLabel = value; return nil }}
}

// SetNameDescription is VDI.set_name_description.
func SetNameDescription(value string) XenEdit {
	return XenEdit{"set_name_description", func(_ Volume, x *XenAttrs) *fault.Error { x.NameDescription = value; return nil }}
}

// SetSharable is VDI.set_sharable.
func SetSharable(value bool) XenEdit {
	return XenEdit{"set_sharable", func(_ Volume, x *XenAttrs) *fault.Error { x.Sharable = value; return nil }}
}

// SetAllowCaching is VDI.set_allow_caching: as xapi, not while attached.
func SetAllowCaching(value bool) XenEdit {
	return XenEdit{"set_allow_caching", func(v Volume, x *XenAttrs) *fault.Error {
		if v.Attached {
			return fault.Conflicts(fault.CodeVDIInUse, []string{v.Info.ID, "set_allow_caching"}, "VDI %s is attached", v.Info.ID)
		}
		x.AllowCaching = value
		return nil
	}}
}

// MapField names one of a VDI's string maps.
type MapField string

// The VDI's maps.
const (
	OtherConfig  MapField = "other_config"
	SMConfig     MapField = "sm_config"
	XenstoreData MapField = "xenstore_data"
)

func (f MapField) of(x *XenAttrs) *map[string]string {
	switch f {
	case OtherConfig:
		return &x.OtherConfig
	case SMConfig:
		return &x.SMConfig
	case XenstoreData:
		return &x.XenstoreData
	}
	panic("volume: no map field " + string(f))
}

// SetMap is VDI.set_<field>: the whole map replaced.
func SetMap(f MapField, value map[string]string) XenEdit {
	return XenEdit{"set_" + string(f), func(_ Volume, x *XenAttrs) *fault.Error {
		*f.of(x) = value
		return nil
	}}
}

// AddToMap is VDI.add_to_<field>: as xapi, a key already there is
// MAP_DUPLICATE_KEY (its value is left alone).
func AddToMap(f MapField, key, value string) XenEdit {
	return XenEdit{"add_to_" + string(f), func(v Volume, x *XenAttrs) *fault.Error {
		m := f.of(x)
		if _, dup := (*m)[key]; dup {
			return fault.Conflicts(fault.CodeMapDuplicateKey, []string{"VDI", string(f), v.Info.ID, key},
				"%s already has key %q", f, key)
		}
		if len(*m) >= MaxEntries {
			return fault.InvalidValue(string(f), key, "already %d entries", MaxEntries)
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[key] = value
		return nil
	}}
}

// RemoveFromMap is VDI.remove_from_<field>: an absent key is no error.
func RemoveFromMap(f MapField, key string) XenEdit {
	return XenEdit{"remove_from_" + string(f), func(_ Volume, x *XenAttrs) *fault.Error {
		delete(*f.of(x), key)
		return nil
	}}
}

// SetTags is VDI.set_tags: a set, so repeats collapse.
func SetTags(tags []string) XenEdit {
	return XenEdit{"set_tags", func(_ Volume, x *XenAttrs) *fault.Error { x.Tags = TagSet(tags); return nil }}
}

// AddTag is VDI.add_tags: a tag already there is no error.
func AddTag(tag string) XenEdit {
	return XenEdit{"add_tags", func(_ Volume, x *XenAttrs) *fault.Error {
		if slices.Contains(x.Tags, tag) {
			return nil
		}
		if len(x.Tags) >= MaxEntries {
			return fault.InvalidValue("tags", tag, "already %d tags", MaxEntries)
		}
		x.Tags = append(x.Tags, tag)
		return nil
	}}
}

// RemoveTag is VDI.remove_tags: an absent tag is no error.
func RemoveTag(tag string) XenEdit {
	return XenEdit{"remove_tags", func(_ Volume, x *XenAttrs) *fault.Error {
		x.Tags = slices.DeleteFunc(x.Tags, func(t string) bool { return t == tag })
		return nil
	}}
}

// TagSet is tags without repeats, in first-seen order.
func TagSet(tags []string) []string {
	var out []string
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
