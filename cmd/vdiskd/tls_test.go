package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// writeSelfSigned writes a throwaway certificate for 127.0.0.1.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vdiskd-test"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With --tls-cert/--tls-key the API is HTTPS only.
func TestHTTPSWithTLSFlags(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	var out vdiskdtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
			"--tls-cert", cert, "--tls-key", key}, func(string) string { return "" }, &out)
	}()
	defer func() {
		cancel()
		if code := testwait.RecvWithin(t, done, 30*time.Second, "vdiskd to stop"); code != 0 {
			t.Errorf("exit %d:\n%s", code, out.String())
		}
	}()
	out.WaitFor(t, "vdiskd ready", 20*time.Second)
	m := regexp.MustCompile(`api=(https://[^ ]+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no https API address in the log:\n%s", out.String())
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(m[1] + "/vdis")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.TLS == nil {
		t.Fatalf("GET over TLS: %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	plain := "http://" + m[1][len("https://"):]
	if resp, err := vdiskdtest.HTTP.Get(plain + "/vdis"); err == nil && resp.StatusCode < 400 {
		t.Fatalf("plain HTTP answered %d on the TLS port", resp.StatusCode)
	}
	// A bad certificate path fails the start clearly.
	var bad vdiskdtest.Buffer
	if code := run(context.Background(), []string{"--data-dir", filepath.Join(dir, "d2"), "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
		"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", key}, func(string) string { return "" }, &bad); code != 1 {
		t.Fatalf("missing certificate: exit %d\n%s", code, bad.String())
	}
}
