package xenapi

import (
	"strings"

	"github.com/google/uuid"
)

// refPrefix starts every handle; NullRef is XenAPI's null handle.
const (
	refPrefix = "OpaqueRef:"
	NullRef   = "OpaqueRef:NULL"
)

// Ref is an object's handle: OpaqueRef:<its uuid>. xapi's are random;
// clients treat them as opaque, so vdiskd derives them and keeps no table.
func Ref(id string) string {
	if id == "" {
		return NullRef
	}
	return refPrefix + id
}

// uuidOf reads the uuid inside a handle of class, or answers
// HANDLE_INVALID.
func uuidOf(class, ref string) (string, error) {
	id, ok := strings.CutPrefix(ref, refPrefix)
	if !ok || uuid.Validate(id) != nil {
		return "", xenError(CodeHandleInvalid, class, ref)
	}
	return id, nil
}

// refs are the handles of ids, as a XenAPI list.
func refs(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = Ref(id)
	}
	return out
}
