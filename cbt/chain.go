package cbt

import (
	"errors"
	"fmt"
	"math"
)

// Head is the generation of a writable disk's live state: newer than every
// snapshot of it.
const Head = math.MaxUint64

// ErrChain reports that two disks are not one changed-block chain in the
// asked order; XenAPI answers SR_BACKEND_FAILURE_460 ("Failed to calculate
// changed blocks for given VDIs"). The wrapped text says which rule failed.
var ErrChain = errors.New("cbt: not one changed-block chain")

// Point is one end of a list_changed_blocks request, as the store sees it.
type Point struct {
	ID      string // the VDI
	Lineage uint64 // the write history it belongs to
	Gen     uint64 // the generation it is frozen at, or Head
	Enabled bool   // cbt_enabled on the VDI
	Epoch   uint64 // which enable_cbt started its chain
}

// CheckChain applies XenAPI's rules for list_changed_blocks(from, to):
// distinct VDIs, both with CBT on, in one chain (one lineage, one
// enable_cbt epoch, so CBT never went off in between), from older than to.
func CheckChain(from, to Point) error {
	switch {
	case from.ID == to.ID:
		return fmt.Errorf("%w: vdi_from and vdi_to are the same VDI %s", ErrChain, from.ID)
	case !from.Enabled:
		return fmt.Errorf("%w: CBT is not enabled on vdi_from %s", ErrChain, from.ID)
	case !to.Enabled:
		return fmt.Errorf("%w: CBT is not enabled on vdi_to %s", ErrChain, to.ID)
	case from.Lineage != to.Lineage:
		return fmt.Errorf("%w: %s and %s have unrelated histories", ErrChain, from.ID, to.ID)
	case from.Epoch != to.Epoch:
		return fmt.Errorf("%w: CBT was disabled between %s and %s", ErrChain, from.ID, to.ID)
	case from.Gen >= to.Gen:
		return fmt.Errorf("%w: %s is not older than %s", ErrChain, from.ID, to.ID)
	}
	return nil
}
