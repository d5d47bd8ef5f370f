package xenrecord

import (
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// A FieldCall is one of XenAPI's calls on a VDI's fields (set_*, add_*,
// remove_*): its REST declaration and the volume service call its
// arguments make. Both XenAPI surfaces offer every one from FieldCalls,
// REST as a route, the wire protocol as a message whose parameters after
// the VDI are the declaration's body members in order; so a field call
// has one argument check (package api) and one rule (package volume).
type FieldCall struct {
	RPC *api.RPC
	// NewArgs is a fresh argument struct (*A) to fill.
	NewArgs func() any
	bind    func(s *volume.Service, answer Answer) rpc.Binding
	do      func(a any, s *volume.Service, by string) (volume.VDI, error)
}

// Answer is how a surface answers a field call's result.
type Answer func(v volume.VDI, err error) (any, error)

// Name is the XenAPI message name (set_name_label, add_to_other_config).
func (f FieldCall) Name() string { return f.RPC.XenAPI[0] }

// Bind is the call as a REST route over s, answered by answer.
func (f FieldCall) Bind(s *volume.Service, answer Answer) rpc.Binding { return f.bind(s, answer) }

// Do makes the call with a filled argument struct (from NewArgs).
func (f FieldCall) Do(a any, s *volume.Service, by string) (volume.VDI, error) { return f.do(a, s, by) }

func fieldCall[A any](d *api.Decl[A], do func(a *A, s *volume.Service, by string) (volume.VDI, error)) FieldCall {
	return FieldCall{
		RPC:     &d.RPC,
		NewArgs: func() any { return new(A) },
		bind: func(s *volume.Service, answer Answer) rpc.Binding {
			return rpc.Bind(d, func(c *rpc.Call, a *A) (any, error) {
				v, err := do(a, s, c.User)
				return answer(v, err)
			})
		},
		do: func(a any, s *volume.Service, by string) (volume.VDI, error) { return do(a.(*A), s, by) },
	}
}

func edit[A any](d *api.Decl[A], e func(a *A) (uuid string, edit volume.XenEdit)) FieldCall {
	return fieldCall(d, func(a *A, s *volume.Service, _ string) (volume.VDI, error) { return s.EditXen(e(a)) })
}

// FieldCalls are every VDI field call of seed 003.
var FieldCalls = []FieldCall{
	edit(api.VDISetNameLabel, func(a *api.VDIStringValue) (string, volume.XenEdit) { return a.UUID, volume.SetNameLabel(a.Value) }),
	edit(api.VDISetNameDescription, func(a *api.VDIStringValue) (string, volume.XenEdit) {
		return a.UUID, volume.SetNameDescription(a.Value)
	}),
	edit(api.VDISetSharable, func(a *api.VDIBoolValue) (string, volume.XenEdit) { return a.UUID, volume.SetSharable(a.Value) }),
	edit(api.VDISetAllowCaching, func(a *api.VDIBoolValue) (string, volume.XenEdit) { return a.UUID, volume.SetAllowCaching(a.Value) }),
	fieldCall(api.VDISetReadOnly, func(a *api.VDIBoolValue, s *volume.Service, _ string) (volume.VDI, error) {
		return s.SetReadOnly(a.UUID, a.Value)
	}),
	fieldCall(api.VDISetOnBoot, func(a *api.VDIOnBootValue, s *volume.Service, by string) (volume.VDI, error) {
		return s.SetOnBoot(a.UUID, a.Value, by)
	}),
	setMap(api.VDISetOtherConfig, volume.OtherConfig),
	setMap(api.VDISetSMConfig, volume.SMConfig),
	setMap(api.VDISetXenstoreData, volume.XenstoreData),
	addToMap(api.VDIAddToOtherConfig, volume.OtherConfig),
	addToMap(api.VDIAddToSMConfig, volume.SMConfig),
	addToMap(api.VDIAddToXenstoreData, volume.XenstoreData),
	removeFromMap(api.VDIRemoveFromOtherConfig, volume.OtherConfig),
	removeFromMap(api.VDIRemoveFromSMConfig, volume.SMConfig),
	removeFromMap(api.VDIRemoveFromXenstoreData, volume.XenstoreData),
	edit(api.VDISetTags, func(a *api.VDISetValue) (string, volume.XenEdit) { return a.UUID, volume.SetTags(a.Value) }),
	edit(api.VDIAddTags, func(a *api.VDITagValue) (string, volume.XenEdit) { return a.UUID, volume.AddTag(a.Value) }),
	edit(api.VDIRemoveTags, func(a *api.VDITagValue) (string, volume.XenEdit) { return a.UUID, volume.RemoveTag(a.Value) }),
}

func setMap(d *api.Decl[api.VDIMapValue], f volume.MapField) FieldCall {
	return edit(d, func(a *api.VDIMapValue) (string, volume.XenEdit) { return a.UUID, volume.SetMap(f, a.Value) })
}

func addToMap(d *api.Decl[api.VDIKeyValue], f volume.MapField) FieldCall {
	return edit(d, func(a *api.VDIKeyValue) (string, volume.XenEdit) { return a.UUID, volume.AddToMap(f, a.Key, a.Value) })
}

func removeFromMap(d *api.Decl[api.VDIKey], f volume.MapField) FieldCall {
	return edit(d, func(a *api.VDIKey) (string, volume.XenEdit) { return a.UUID, volume.RemoveFromMap(f, a.Key) })
}
