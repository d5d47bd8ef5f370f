package blockstore

import "errors"

// Errors callers branch on. Every error the store returns wraps one of these
// (errors.Is) with context naming the operation and the volume; the
// management layer maps them to XenAPI codes.
var (
	ErrNotFound    = errors.New("no such volume")                              // XenAPI UUID_INVALID / HANDLE_INVALID
	ErrExists      = errors.New("volume already exists")                       // a caller reused an ID
	ErrInvalid     = errors.New("invalid argument")                            // sizes, lengths, empty IDs
	ErrOutOfRange  = errors.New("offset or length past the end of the volume") // NBD EINVAL (reads) / ENOSPC (writes)
	ErrReadOnly    = errors.New("volume is read-only")                         // XenAPI VDI_READONLY, NBD EPERM
	ErrInUse       = errors.New("volume is in use")                            // XenAPI VDI_IN_USE
	ErrShrink      = errors.New("volume cannot shrink")                        // XenAPI VDI_TOO_SMALL
	ErrIsSnapshot  = errors.New("volume is a snapshot")                        // XenAPI OPERATION_NOT_ALLOWED
	ErrNotSnapshot = errors.New("volume is not a snapshot")                    // XenAPI OPERATION_NOT_ALLOWED
	ErrNoCBT       = errors.New("changed-block tracking is not enabled")       // XenAPI VDI_NO_CBT_METADATA
	ErrCBTMetadata = errors.New("volume holds only changed-block metadata")    // XenAPI VDI_INCOMPATIBLE_TYPE [ref; "cbt_metadata"]
	ErrClosed      = errors.New("block store is closed")
	ErrCorrupt     = errors.New("block store metadata is corrupt")
)
