package rpc

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// WriteJSON answers status with v as compact JSON (HTML not escaped: the
// bodies are data, never pages).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// SetRetryAfter tells the client when to try again, in whole seconds
// rounded up, if e says.
func SetRetryAfter(w http.ResponseWriter, e *fault.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
}
