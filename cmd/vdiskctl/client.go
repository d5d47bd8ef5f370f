package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// maxResponse bounds what vdiskctl reads of an answer.
const maxResponse = 256 << 20

// response is an HTTP answer, read whole.
type response struct {
	status int
	line   string // "404 Not Found"
	body   []byte
}

// authFunc sets a request's credentials.
type authFunc func(*http.Request)

func bearer(token string) authFunc {
	return func(r *http.Request) {
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
	}
}

func basic(user, password string) authFunc {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

// checkURL accepts an http or https base URL.
func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageErrorf("bad URL %q: want http://host:port or https://host:port", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", usageErrorf("bad URL %q: no query or fragment, please", s)
	}
	// The daemon logs its API as http://host:port/api; accept that form.
	return strings.TrimSuffix(strings.TrimRight(s, "/"), "/api"), nil
}

func (a *app) httpClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if a.insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
	}
	return &http.Client{Transport: t}
}

// send makes one request to base+path. A nil body sends none. Transport
// failures are exit status 3; any HTTP answer is returned.
func (a *app) send(base, method, path string, query url.Values, body []byte, auth authFunc) (*response, error) {
	target := base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vdiskctl")
	if auth != nil {
		auth(req)
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return nil, transportError(base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, transportError(base, err)
	}
	return &response{status: resp.StatusCode, line: resp.Status, body: b}, nil
}

func transportError(base string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	e := &exitError{code: exitTransport, msg: fmt.Sprintf("cannot reach vdiskd at %s: %v", base, err),
		hint: "Is the daemon running? Start it with 'make run', or point --url (or VDISKCTL_URL) at it."}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		e.hint = "The server's TLS certificate is not trusted; --insecure skips the check."
	}
	return e
}

// apiError turns an error answer into exit status 1: the server's
// {"error":{...}} as "CODE [params]: message", anything else as the
// status line and body.
func apiError(resp *response) error {
	if msg, ok := surfaceError(resp); ok {
		e := &exitError{code: exitAPI, msg: msg}
		if resp.status == http.StatusUnauthorized {
			e.hint = "Log in with 'vdiskctl login' (or pass --token)."
		}
		return e
	}
	msg := "HTTP " + resp.line
	if b := strings.TrimSpace(string(resp.body)); b != "" {
		if len(b) > 2000 {
			b = b[:2000] + "..."
		}
		msg += ": " + b
	}
	return &exitError{code: exitAPI, msg: msg}
}

// surfaceError reads the error body of whichever surface answered.
func surfaceError(resp *response) (string, bool) {
	var eb api.ErrorBody
	if json.Unmarshal(resp.body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		return eb.Error.Error(), true
	}
	// Cinder's fault body: {"badRequest": {"code": 400, "message": ...}}.
	var fb map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(resp.body, &fb) == nil && len(fb) == 1 {
		for name, f := range fb {
			if f.Code == resp.status && f.Message != "" {
				return fmt.Sprintf("%s (HTTP %d %s)", f.Message, f.Code, name), true
			}
		}
	}
	// kvol's: {"code": 400, "error": "INVALID_VALUE", "message": ...}.
	var kb struct {
		Code    int    `json:"code"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(resp.body, &kb) == nil && kb.Code == resp.status && kb.Message != "" {
		return fmt.Sprintf("%s: %s (HTTP %d)", kb.Error, kb.Message, kb.Code), true
	}
	// vSphere's (vStats): {"error_type": ..., "messages": [{"default_message": ...}]}.
	var vb struct {
		ErrorType string `json:"error_type"`
		Messages  []struct {
			DefaultMessage string `json:"default_message"`
		} `json:"messages"`
	}
	if json.Unmarshal(resp.body, &vb) == nil && vb.ErrorType != "" && len(vb.Messages) > 0 {
		return fmt.Sprintf("%s: %s (HTTP %d)", vb.ErrorType, vb.Messages[0].DefaultMessage, resp.status), true
	}
	return "", false
}

// call sends an authenticated call of the XenAPI REST surface.
func (a *app) call(method, path string, query url.Values, body []byte) (*response, error) {
	return a.callAs(&xenREST, method, path, query, body)
}

// callAs sends an authenticated call of surface sp and returns its answer,
// or the error an error answer stands for.
func (a *app) callAs(sp *surfaceSpec, method, path string, query url.Values, body []byte) (*response, error) {
	base, err := a.baseURL()
	if err != nil {
		return nil, err
	}
	tok, _, err := a.resolveToken(base)
	if err != nil {
		return nil, err
	}
	resp, err := a.send(base, method, path, query, body, sp.credentials(tok))
	if err != nil {
		return nil, err
	}
	if resp.status >= 300 {
		return nil, apiError(resp)
	}
	return resp, nil
}
