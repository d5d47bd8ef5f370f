// Package peer is vdiskd's client of another vdiskd's REST API (a peer
// zone): it logs in with the credentials registered for the zone, keeps
// the token, logs in again when the token stops working, and decodes the
// peer's XenAPI-style errors back into faults. The zone registry's probe
// and the replicator speak to peers through it.
package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Client calls one peer.
type Client struct {
	base, user, password string
	http                 *http.Client

	mu    sync.Mutex
	token string
}

// maxAnswer bounds a peer's answer.
const maxAnswer = 8 << 20

// New makes a client of the peer at baseURL (http(s)://host:port),
// trusting caPEM (if not empty) for TLS.
func New(baseURL, user, password, caPEM string) (*Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("peer: the CA holds no PEM certificate")
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: strings.TrimSuffix(strings.TrimRight(baseURL, "/"), "/api"), user: user, password: password,
		http: &http.Client{Transport: t, Timeout: time.Minute}}, nil
}

// Node asks the peer who it is.
func (c *Client) Node(ctx context.Context) (api.Node, error) {
	var n api.Node
	err := c.Call(ctx, http.MethodGet, "/api/node", nil, &n)
	return n, err
}

// Call sends one authenticated call and decodes its answer into out (if
// not nil). A token the peer no longer takes is replaced once.
func (c *Client) Call(ctx context.Context, method, path string, body, out any) error {
	for attempt := 0; ; attempt++ {
		tok, err := c.login(ctx, attempt > 0)
		if err != nil {
			return err
		}
		status, answer, err := c.do(ctx, method, path, body, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+tok)
		})
		if err != nil {
			return err
		}
		if status == http.StatusUnauthorized && attempt == 0 {
			continue
		}
		if status >= 300 {
			return peerError(method, path, status, answer)
		}
		if out != nil && len(answer) > 0 {
			if err := json.Unmarshal(answer, out); err != nil {
				return fmt.Errorf("peer %s: %s %s: decoding the answer: %w", c.base, method, path, err)
			}
		}
		return nil
	}
}

// login returns the token, logging in if there is none or again is set.
func (c *Client) login(ctx context.Context, again bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && !again {
		return c.token, nil
	}
	status, answer, err := c.do(ctx, http.MethodPost, "/api/token", nil, func(r *http.Request) {
		r.SetBasicAuth(c.user, c.password)
	})
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", peerError(http.MethodPost, "/api/token", status, answer)
	}
	var t api.Token
	if err := json.Unmarshal(answer, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("peer %s: the login answered no token", c.base)
	}
	c.token = t.Token
	return c.token, nil
}

func (c *Client) do(ctx context.Context, method, path string, body any, auth func(*http.Request)) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vdiskd-peer")
	auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("peer %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("peer %s: %s %s: %w", c.base, method, path, err)
	}
	return resp.StatusCode, answer, nil
}

// peerError is a peer's error answer as a fault: its own code and params
// when it sent XenAPI's error body.
func peerError(method, path string, status int, answer []byte) error {
	var eb api.ErrorBody
	if json.Unmarshal(answer, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		f := *eb.Error
		f.Kind = kindOf(status)
		f.Message = fmt.Sprintf("the peer answered %s %s with %d: %s", method, path, status, f.Message)
		return &f
	}
	return fault.New(kindOf(status), fault.CodeInternal, nil, "the peer answered %s %s with %d", method, path, status)
}

func kindOf(status int) fault.Kind {
	switch status {
	case http.StatusBadRequest:
		return fault.Invalid
	case http.StatusUnauthorized:
		return fault.Unauthenticated
	case http.StatusForbidden:
		return fault.Forbidden
	case http.StatusNotFound:
		return fault.NotFound
	case http.StatusConflict:
		return fault.Conflict
	case http.StatusServiceUnavailable:
		return fault.Unavailable
	}
	return fault.Unavailable // the peer failed: to this daemon, it is unavailable
}
