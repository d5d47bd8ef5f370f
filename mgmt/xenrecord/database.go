package xenrecord

import (
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// OpenDatabase is VDI.open_database's answer for both XenAPI surfaces:
// a VDI that is not of type metadata is VDI_INCOMPATIBLE_TYPE; a metadata
// VDI cannot be opened either, since vdiskd keeps no XenServer pool
// databases.
func OpenDatabase(v volume.Volume) error {
	if t := v.Attrs.Xen.VDIType(v.Info.Kind); t != "metadata" {
		return api.Conflict(api.CodeVDIIncompatible, []string{v.Info.ID, t}, "VDI %s is of type %s, not metadata", v.Info.ID, t)
	}
	return api.Conflict(api.CodeCouldNotImportDB, []string{"vdiskd does not read XenServer pool metadata"},
		"vdiskd keeps no XenServer pool databases")
}
