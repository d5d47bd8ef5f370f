package main

import (
	"context"
	"strings"
	"testing"
	"time"
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
		var out syncBuffer
		if code := run(context.Background(), bad, func(string) string { return "" }, &out); code != 2 || !strings.Contains(out.String(), bad[0]) {
			t.Errorf("%v: exit %d, output %q; want 2 and a message naming the flag", bad, code, out.String())
		}
	}

	env := map[string]string{"VDISKD_NBD_MAX_CONNS": "0", "VDISKD_NBD_IDLE_TIMEOUT": "1h", "VDISKD_TOKEN_TTL": "90m"}
	c, code := parseFlags([]string{"--nbd-max-inflight-bytes", "1GiB", "--nbd-max-handshakes", "7"},
		func(k string) string { return env[k] }, &syncBuffer{})
	if c == nil {
		t.Fatalf("parse: exit %d", code)
	}
	o := c.limits.nbdOptions(c.limits.nbd)
	if o.MaxConns != -1 || o.MaxHandshakes != 7 || o.IdleTimeout != time.Hour || o.HandshakeTimeout != 30*time.Second ||
		o.MaxTotalInFlightBytes != 1<<30 || c.limits.tokenTTL != 90*time.Minute || c.limits.detachGrace != 2*time.Second {
		t.Errorf("parsed %+v, token TTL %v, detach grace %v", o, c.limits.tokenTTL, c.limits.detachGrace)
	}
	// 0 is no wait, which mgmt.Options spells negative.
	if c, _ := parseFlags([]string{"--detach-grace", "0"}, func(string) string { return "" }, &syncBuffer{}); c == nil || c.limits.detachGrace >= 0 {
		t.Errorf("--detach-grace 0 parsed as %+v", c)
	}
}
