package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// The limit flags parse, refuse bad values before anything starts, and
// read their environment twins.
func TestLimitFlags(t *testing.T) {
	for _, bad := range [][]string{
		{"--nbd-max-conns", "-1"}, {"--nbd-max-conns", "many"}, {"--nbd-max-handshakes", "1.5"},
		{"--nbd-handshake-timeout", "0"}, {"--nbd-handshake-timeout", "30"}, {"--nbd-idle-timeout", "-1s"},
		{"--nbd-max-inflight-bytes", "32MiB"}, {"--nbd-max-inflight-bytes", "lots"}, {"--nbd-max-inflight-bytes", "-1G"},
		{"--token-ttl", "0"}, {"--token-ttl", "1d"}, {"--detach-grace", "-1s"}, {"--detach-grace", "2"},
	} {
		var out vdiskdtest.Buffer
		if code := run(context.Background(), bad, func(string) string { return "" }, &out); code != 2 || !strings.Contains(out.String(), bad[0]) {
			t.Errorf("%v: exit %d, output %q; want 2 and a message naming the flag", bad, code, out.String())
		}
	}

	env := map[string]string{"VDISKD_NBD_MAX_CONNS": "0", "VDISKD_NBD_IDLE_TIMEOUT": "1h", "VDISKD_TOKEN_TTL": "90m"}
	c, code := parseFlags([]string{"--nbd-max-inflight-bytes", "1GiB", "--nbd-max-handshakes", "7"},
		func(k string) string { return env[k] }, &vdiskdtest.Buffer{})
	if c == nil {
		t.Fatalf("parse: exit %d", code)
	}
	o := c.limits.nbdOptions(c.limits.nbd)
	if o.MaxConns != -1 || o.MaxHandshakes != 7 || o.IdleTimeout != time.Hour || o.HandshakeTimeout != 30*time.Second ||
		o.MaxTotalInFlightBytes != 1<<30 || c.limits.tokenTTL != 90*time.Minute || c.limits.detachGrace != 2*time.Second {
		t.Errorf("parsed %+v, token TTL %v, detach grace %v", o, c.limits.tokenTTL, c.limits.detachGrace)
	}
	// 0 is no wait, which mgmt.Options spells negative.
	if c, _ := parseFlags([]string{"--detach-grace", "0"}, func(string) string { return "" }, &vdiskdtest.Buffer{}); c == nil || c.limits.detachGrace >= 0 {
		t.Errorf("--detach-grace 0 parsed as %+v", c)
	}
}

// --direct-io-min is off by default, takes a multiple of 4K, refuses
// anything else, and reads its environment twin.
func TestDirectIOFlag(t *testing.T) {
	for _, bad := range []string{"3K", "1", "none", "-4K", "2G", "0"} {
		var out vdiskdtest.Buffer
		args := []string{"--direct-io-min", bad}
		if code := run(context.Background(), args, func(string) string { return "" }, &out); code != 2 || !strings.Contains(out.String(), "--direct-io-min") {
			t.Errorf("%v: exit %d, output %q; want 2 and a message naming the flag", args, code, out.String())
		}
	}
	for _, tc := range []struct {
		args []string
		env  string
		want int
	}{
		{nil, "", 0},
		{[]string{"--direct-io-min", "256K"}, "", 256 << 10},
		{[]string{"--direct-io-min", "off"}, "1M", 0},
		{nil, "1M", 1 << 20},
	} {
		c, code := parseFlags(tc.args, func(k string) string {
			if k == "VDISKD_DIRECT_IO_MIN" {
				return tc.env
			}
			return ""
		}, &vdiskdtest.Buffer{})
		if c == nil || c.directIOMin != tc.want {
			t.Errorf("%v with env %q: %+v (exit %d), want directIOMin %d", tc.args, tc.env, c, code, tc.want)
		}
	}
}
