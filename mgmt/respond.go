package mgmt

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

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
