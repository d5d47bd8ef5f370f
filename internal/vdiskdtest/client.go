package vdiskdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// HTTP is the client REST calls use unless a Client has its own: with a
// timeout, so a call the daemon never answers (or a kill cut) fails the
// test instead of hanging it.
var HTTP = &http.Client{Timeout: time.Minute}

// Client talks REST to a daemon (its API, under /api) with a token. The
// methods with a testing.TB fail the test on a transport error; TryCall
// returns it instead, for calls that may meet a dying daemon.
type Client struct {
	API   string       // http://127.0.0.1:PORT/api
	Token string       // the token Call and MustCall send
	HTTP  *http.Client // nil: HTTP
}

func (c *Client) hc() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return HTTP
}

// Login gets a token with Basic user:password (POST /token).
func (c *Client) Login(t testing.TB, user, password string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.API+"/token", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	var tok struct{ Token string }
	if st, b := c.DoRaw(t, req, &tok); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("login %s: HTTP %d %s", user, st, b)
	}
	return tok.Token
}

// Call makes a REST call with the client's token, decodes a 2xx answer
// into out (if not nil) or an error answer into out if it is an
// *api.ErrorBody, and returns the HTTP status.
func (c *Client) Call(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	return c.CallAs(t, c.Token, method, path, body, out)
}

// CallAs is Call with another token.
func (c *Client) CallAs(t testing.TB, token, method, path string, body, out any) int {
	t.Helper()
	st, _ := c.CallRaw(t, token, method, path, body, out)
	return st
}

// CallRaw is CallAs that also returns the answer's body.
func (c *Client) CallRaw(t testing.TB, token, method, path string, body, out any) (int, []byte) {
	t.Helper()
	req, err := c.request(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return c.DoRaw(t, req, out)
}

// MustCall is Call that fails the test, with the error body, unless the
// status is 2xx.
func (c *Client) MustCall(t testing.TB, method, path string, body, out any) {
	t.Helper()
	if st, b := c.CallRaw(t, c.Token, method, path, body, out); st >= 300 {
		t.Fatalf("%s %s: HTTP %d %s", method, path, st, b)
	}
}

// Do sends a request the test made and decodes the answer as Call does.
func (c *Client) Do(t testing.TB, req *http.Request, out any) int {
	t.Helper()
	st, _ := c.DoRaw(t, req, out)
	return st
}

// DoRaw is Do that also returns the answer's body.
func (c *Client) DoRaw(t testing.TB, req *http.Request, out any) (int, []byte) {
	t.Helper()
	st, b, err := c.do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	if err := decode(st, b, out); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return st, b
}

// TryCall is a REST call that may meet a dying daemon: a transport error
// is returned, never fatal. out is decoded from a 2xx answer with a body;
// an error answer comes back as the *api.ErrorBody.
func (c *Client) TryCall(method, path string, body, out any) (int, *api.ErrorBody, error) {
	req, err := c.request(method, path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	st, b, err := c.do(req)
	if err != nil {
		return 0, nil, err
	}
	if st >= 300 {
		eb := &api.ErrorBody{}
		json.Unmarshal(b, eb)
		return st, eb, nil
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return st, nil, fmt.Errorf("decoding %q: %w", b, err)
		}
	}
	return st, nil, nil
}

func (c *Client) request(method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	return http.NewRequest(method, c.API+path, rd)
}

func (c *Client) do(req *http.Request) (int, []byte, error) {
	resp, err := c.hc().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// decode puts a 2xx answer into out, and an error answer into out if it
// is an *api.ErrorBody.
func decode(status int, b []byte, out any) error {
	if out != nil && status < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding %q: %v", b, err)
		}
	}
	if eb, ok := out.(*api.ErrorBody); ok && status >= 300 {
		json.Unmarshal(b, eb)
	}
	return nil
}

// CreateVDI makes a VDI of size bytes.
func (c *Client) CreateVDI(t testing.TB, name string, size int64) api.VDI {
	t.Helper()
	var v api.VDI
	c.MustCall(t, http.MethodPost, "/vdis", map[string]any{"name_label": name, "virtual_size": size}, &v)
	return v
}

// Snapshot snapshots a VDI.
func (c *Client) Snapshot(t testing.TB, vdi string) api.VDI {
	t.Helper()
	var v api.VDI
	c.MustCall(t, http.MethodPost, "/vdis/"+vdi+"/snapshot", nil, &v)
	return v
}

// VDI reads a VDI record.
func (c *Client) VDI(t testing.TB, vdi string) api.VDI {
	t.Helper()
	var v api.VDI
	c.MustCall(t, http.MethodGet, "/vdis/"+vdi, nil, &v)
	return v
}

// NBDInfo is get_nbd_info.
func (c *Client) NBDInfo(t testing.TB, vdi string) []api.NBDInfo {
	t.Helper()
	var info []api.NBDInfo
	c.MustCall(t, http.MethodGet, "/vdis/"+vdi+"/nbd_info", nil, &info)
	return info
}

// firstNBDInfo is get_nbd_info's first record.
func (c *Client) firstNBDInfo(t testing.TB, vdi string) api.NBDInfo {
	t.Helper()
	info := c.NBDInfo(t, vdi)
	if len(info) == 0 {
		t.Fatalf("get_nbd_info %s: no records", vdi)
	}
	return info[0]
}

// URI is the ready NBD URI of a VDI, from get_nbd_info.
func (c *Client) URI(t testing.TB, vdi string) string {
	t.Helper()
	return c.firstNBDInfo(t, vdi).URI
}

// ExportName is the export name of a VDI, from get_nbd_info.
func (c *Client) ExportName(t testing.TB, vdi string) string {
	t.Helper()
	return c.firstNBDInfo(t, vdi).ExportName
}
