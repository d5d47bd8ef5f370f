package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/vdiskd/vdiskd/internal/bytesize"
	"github.com/vdiskd/vdiskd/nbd"
)

// limitFlags bound what clients can take: NBD connections, handshakes,
// idle time and buffered bytes, and how long a token lives. Each is a
// string flag (with its VDISKD_* twin) parsed by check.
type limitFlags struct {
	maxConns, maxHandshakes, handshakeTimeout, idleTimeout, maxInflight, ttl, grace string
	statsRetention, statsTombstones                                                 string

	nbd         nbd.Options // the parsed NBD limits
	tokenTTL    time.Duration
	detachGrace time.Duration // mgmt.Options.DetachGrace: negative is none
	// vStats: how long data points, and deleted specs' ids, are kept.
	pointRetention, tombstoneRetention time.Duration
}

func (l *limitFlags) register(str func(p *string, name, def, usage string)) {
	str(&l.maxConns, "nbd-max-conns", "1024", "NBD connections open at once; more are closed at accept (0: no cap)")
	str(&l.maxHandshakes, "nbd-max-handshakes", "128", "NBD connections still negotiating at once; more are closed at accept (0: no cap)")
	str(&l.handshakeTimeout, "nbd-handshake-timeout", "30s", "time an NBD client has to finish negotiating (TLS included)")
	str(&l.idleTimeout, "nbd-idle-timeout", "0", "disconnect NBD clients silent this long with nothing in flight (0: never, as qemu expects)")
	str(&l.maxInflight, "nbd-max-inflight-bytes", "256M", "request and reply data all NBD connections together hold in memory; past it they wait")
	str(&l.ttl, "token-ttl", "24h", "lifetime of a token from POST /api/token; NBD connections opened with it end when it does")
	str(&l.statsRetention, "stats-retention", "24h", "how long vStats data points are kept")
	str(&l.statsTombstones, "stats-tombstones", "168h", "how long vStats remembers deleted acquisition specs for cache syncs; an older start_epoch is refused (a full sync is needed)")
	str(&l.grace, "detach-grace", "2s", "how long a call that needs a VDI detached (destroy, resize, set_on_boot, list_changed_blocks...) and an on_boot=reset attach wait for NBD clients that have just hung up (0: not at all)")
}

// check parses the values, or says what is wrong with one.
func (l *limitFlags) check() string {
	count := func(name, v string, p *int) string {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Sprintf("--%s %q: want a count, 0 for no cap", name, v)
		}
		*p = n
		if n == 0 {
			*p = -1 // nbd.Options: negative is no cap, zero the default
		}
		return ""
	}
	duration := func(name, v string, p *time.Duration, zeroOK bool) string {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return fmt.Sprintf("--%s %q: want a duration such as 30s or 2h", name, v)
		}
		*p = d
		return ""
	}
	for _, msg := range []string{
		count("nbd-max-conns", l.maxConns, &l.nbd.MaxConns),
		count("nbd-max-handshakes", l.maxHandshakes, &l.nbd.MaxHandshakes),
		duration("nbd-handshake-timeout", l.handshakeTimeout, &l.nbd.HandshakeTimeout, false),
		duration("nbd-idle-timeout", l.idleTimeout, &l.nbd.IdleTimeout, true),
		duration("token-ttl", l.ttl, &l.tokenTTL, false),
		duration("detach-grace", l.grace, &l.detachGrace, true),
		duration("stats-retention", l.statsRetention, &l.pointRetention, false),
		duration("stats-tombstones", l.statsTombstones, &l.tombstoneRetention, false),
	} {
		if msg != "" {
			return msg
		}
	}
	b, err := bytesize.Parse(l.maxInflight)
	if err != nil || b < 33<<20 {
		return fmt.Sprintf("--nbd-max-inflight-bytes %q: want a size of at least 33MiB (one 32 MiB request), such as 256M or 1G", l.maxInflight)
	}
	l.nbd.MaxTotalInFlightBytes = b
	if l.detachGrace == 0 {
		l.detachGrace = -1 // mgmt.Options: zero is the default
	}
	return ""
}

// nbdOptions adds the limits to o.
func (l *limitFlags) nbdOptions(o nbd.Options) nbd.Options {
	o.MaxConns, o.MaxHandshakes = l.nbd.MaxConns, l.nbd.MaxHandshakes
	o.HandshakeTimeout, o.IdleTimeout = l.nbd.HandshakeTimeout, l.nbd.IdleTimeout
	o.MaxTotalInFlightBytes = l.nbd.MaxTotalInFlightBytes
	return o
}
