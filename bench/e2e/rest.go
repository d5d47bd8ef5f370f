package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// rest talks to vdiskd's REST API as admin (routes in docs/api.md). Only
// the few record fields the harness needs are decoded, so it does not
// depend on mgmt/api.
type rest struct {
	api   string // http://127.0.0.1:PORT/api
	token string
	hc    *http.Client
}

type vdiRecord struct {
	UUID        string `json:"uuid"`
	NameLabel   string `json:"name_label"`
	VirtualSize int64  `json:"virtual_size"`
	CBTEnabled  bool   `json:"cbt_enabled"`
}

type nbdInfo struct {
	URI string `json:"uri"`
}

type changedBlocks struct {
	Bitmap        string `json:"bitmap"`
	ChangedBlocks int    `json:"changed_blocks"`
	VirtualSize   int64  `json:"virtual_size"`
}

// login gets a token with Basic user:password (POST /api/token).
func login(ctx context.Context, api, user, password string) (*rest, error) {
	r := &rest{api: api, hc: &http.Client{Timeout: 5 * time.Minute}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/token", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, password)
	var tok struct {
		Token string `json:"token"`
	}
	if err := r.do(req, &tok); err != nil {
		return nil, fmt.Errorf("login as %s: %w", user, err)
	}
	if tok.Token == "" {
		return nil, fmt.Errorf("login as %s: no token in the answer", user)
	}
	r.token = tok.Token
	return r, nil
}

// call makes one authenticated call; body (if not nil) goes as JSON, the
// answer is decoded into out (if not nil).
func (r *rest) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.api+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	return r.do(req, out)
}

func (r *rest) do(req *http.Request, out any) error {
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decoding %.200q: %w", req.Method, req.URL.Path, b, err)
		}
	}
	return nil
}

func (r *rest) createVDI(ctx context.Context, name string, size int64) (vdiRecord, error) {
	var v vdiRecord
	err := r.call(ctx, http.MethodPost, "/vdis", map[string]any{"name_label": name, "virtual_size": size}, &v)
	if err == nil && v.UUID == "" {
		err = fmt.Errorf("create VDI %s: no uuid in the answer", name)
	}
	return v, err
}

func (r *rest) enableCBT(ctx context.Context, uuid string) error {
	return r.call(ctx, http.MethodPost, "/vdis/"+uuid+"/enable_cbt", nil, nil)
}

func (r *rest) snapshot(ctx context.Context, uuid string) (vdiRecord, error) {
	var v vdiRecord
	err := r.call(ctx, http.MethodPost, "/vdis/"+uuid+"/snapshot", nil, &v)
	return v, err
}

func (r *rest) getVDI(ctx context.Context, uuid string) (vdiRecord, error) {
	var v vdiRecord
	err := r.call(ctx, http.MethodGet, "/vdis/"+uuid, nil, &v)
	return v, err
}

// nbdURI is get_nbd_info's ready URI (percent-encoded export name with a
// session token).
func (r *rest) nbdURI(ctx context.Context, uuid string) (string, error) {
	var info []nbdInfo
	if err := r.call(ctx, http.MethodGet, "/vdis/"+uuid+"/nbd_info", nil, &info); err != nil {
		return "", err
	}
	if len(info) == 0 || info[0].URI == "" {
		return "", fmt.Errorf("get_nbd_info %s: no URI", uuid)
	}
	return info[0].URI, nil
}

func (r *rest) listChangedBlocks(ctx context.Context, from, to string) (changedBlocks, error) {
	var cb changedBlocks
	err := r.call(ctx, http.MethodGet, "/vdis/"+to+"/list_changed_blocks?vdi_from="+url.QueryEscape(from), nil, &cb)
	return cb, err
}

// scrapeMetrics reads /metrics (beside /api, no auth) and sums every
// sample of each metric name over its labels.
func (r *rest) scrapeMetrics(ctx context.Context) (map[string]float64, error) {
	u := strings.TrimSuffix(r.api, "/api") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return parsePromText(resp.Body)
}

// parsePromText sums the samples of the Prometheus text format by metric
// name (labels dropped).
func parsePromText(rd io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		// The value follows the labels (which may hold spaces inside quotes).
		rest := l[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndex(rest, "}")
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// timeCall runs f n times and returns the median duration.
func timeCall(n int, f func() error) (time.Duration, error) {
	var ds []float64
	for range n {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, float64(time.Since(t0)))
	}
	return time.Duration(median(ds)), nil
}
