package mgmt

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // answers may carry tokens
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	if api.Status(e) == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="vdiskd"`)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, api.Status(e), api.ErrorBody{Error: e})
}

// storeError translates a block-store failure about VDI id into the XenAPI
// error a caller branches on.
func storeError(err error, id, op string) *api.Error {
	var ae *api.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, blockstore.ErrNotFound):
		return api.NotFound("VDI", id)
	case errors.Is(err, blockstore.ErrInUse):
		return api.Conflict(api.CodeVDIInUse, []string{id, op}, "VDI %s is attached; %s needs it detached", id, op)
	case errors.Is(err, blockstore.ErrReadOnly):
		return api.Conflict(api.CodeVDIReadOnly, []string{id}, "VDI %s is read-only", id)
	case errors.Is(err, blockstore.ErrShrink):
		return api.Conflict(api.CodeShrinkRefused, []string{"", "VDI Invalid size", "shrinking not allowed"},
			"VDI %s cannot shrink: %v", id, err)
	case errors.Is(err, blockstore.ErrIsSnapshot):
		return api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot", id)
	case errors.Is(err, blockstore.ErrNotSnapshot):
		return api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is not a snapshot: " + id}, "VDI %s is not a snapshot", id)
	case errors.Is(err, blockstore.ErrNoCBT):
		return api.Conflict(api.CodeVDINoCBTMetadata, []string{id}, "VDI %s has no changed-block tracking metadata", id)
	case errors.Is(err, blockstore.ErrCBTMetadata):
		return api.Conflict(api.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds only changed-block metadata", id)
	case errors.Is(err, cbt.ErrChain):
		return api.Conflict(api.CodeChangedBlocks, []string{"", "Failed to calculate changed blocks for given VDIs", ""},
			"%v", err)
	case errors.Is(err, blockstore.ErrInvalid):
		return api.BadRequest(api.CodeInvalidValue, []string{"", ""}, "%v", err)
	case errors.Is(err, syscall.ENOSPC):
		return api.Errorf(http.StatusInsufficientStorage, "SR_FULL", []string{id}, "no space left for VDI %s: %v", id, err)
	case errors.Is(err, blockstore.ErrClosed):
		return api.Errorf(http.StatusServiceUnavailable, api.CodeServerShutdown, nil, "vdiskd is shutting down")
	}
	return api.Errorf(http.StatusInternalServerError, api.CodeInternal, []string{id}, "%s %s: %v", op, id, err)
}
