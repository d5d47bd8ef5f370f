package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"strconv"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// nbdInfo answers get_nbd_info: one record per address clients can reach
// the NBD listener on, as XenServer gives one per network with the nbd
// purpose. cert is the PEM chain the server presents and subject the name
// a client should verify, both empty without TLS.
type nbdInfo struct {
	addrs         []string // hosts, no port
	port          int
	cert, subject string
	tls           bool
}

func newNBDInfo(ln net.Addr, tlsConf *tls.Config) *nbdInfo {
	host, portStr, _ := net.SplitHostPort(ln.String())
	port, _ := strconv.Atoi(portStr)
	n := &nbdInfo{port: port, tls: tlsConf != nil}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// A wildcard listener is reachable on every configured address.
		ifaddrs, _ := net.InterfaceAddrs()
		for _, a := range ifaddrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() && (ip.To4() == nil || ipn.IP.To4() != nil) {
				n.addrs = append(n.addrs, ipn.IP.String())
			}
		}
	} else {
		n.addrs = []string{host}
	}
	if tlsConf != nil && len(tlsConf.Certificates) > 0 {
		chain := tlsConf.Certificates[0].Certificate
		for _, der := range chain {
			n.cert += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		}
		if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
			n.subject = leaf.Subject.CommonName
			if len(leaf.DNSNames) > 0 {
				n.subject = leaf.DNSNames[0]
			}
		}
	}
	return n
}

// records builds the answer for one VDI and export name.
func (n *nbdInfo) records(exportName string) []api.NBDInfo {
	scheme := "nbd"
	if n.tls {
		scheme = "nbds"
	}
	out := make([]api.NBDInfo, 0, len(n.addrs))
	for _, a := range n.addrs {
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(a, strconv.Itoa(n.port)), Path: "/" + exportName}
		u.RawPath = "/" + url.PathEscape(exportName)
		out = append(out, api.NBDInfo{ExportName: exportName, Address: a, Port: n.port,
			Cert: n.cert, Subject: n.subject, URI: u.String()})
	}
	return out
}
