package xenrest

import (
	"encoding/json"
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Prefixes: this is the default surface; unknown paths get its error body.
func (s *Surface) Prefixes() []string { return []string{""} }

// Decode reads arguments as plain JSON members, path variables and query
// parameters.
func (s *Surface) Decode(r *http.Request, call *rpc.RPC, dst any) error {
	return rpc.DecodeArgs(r, call, dst)
}

// Fault maps what a handler returned; block-store errors become XenAPI's.
func (s *Surface) Fault(err error, call *rpc.RPC) *fault.Error {
	return volume.StoreError(err, "", call.Call)
}

// WriteError answers {"error":{"code","params","message"}} with the
// kind's HTTP status.
func (s *Surface) WriteError(w http.ResponseWriter, _ *http.Request, e *fault.Error) {
	status := api.Status(e)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="vdiskd"`)
	}
	rpc.SetRetryAfter(w, e)
	writeJSON(w, status, api.ErrorBody{Error: e})
}

// WriteResult answers JSON with the call's status; a new object's
// Location is its path, a task's is /api/tasks/{id} with 202.
func (s *Surface) WriteResult(w http.ResponseWriter, _ *http.Request, call *rpc.RPC, res any) {
	switch res := res.(type) {
	case rpc.Started:
		w.Header().Set("Location", "/api/tasks/"+res.TaskID)
		writeJSON(w, http.StatusAccepted, res.Body)
	case rpc.Created:
		w.Header().Set("Location", res.Location)
		writeJSON(w, call.Status, res.Body)
	default:
		if call.Status == http.StatusNoContent {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, call.Status, res)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // answers may carry tokens
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
