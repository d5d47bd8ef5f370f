package nbdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"
)

var (
	tlsOnce   sync.Once
	tlsErr    error
	tlsServer *tls.Config
	tlsClient *tls.Config
)

// TLSConfigs returns a server configuration with a self-signed certificate
// for "localhost" and a client configuration that trusts it (made once per
// test binary; each call returns copies).
func TLSConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	tlsOnce.Do(func() {
		var cert tls.Certificate
		var pool *x509.CertPool
		if cert, pool, tlsErr = selfSigned(); tlsErr == nil {
			tlsServer = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			tlsClient = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		}
	})
	if tlsErr != nil {
		t.Fatalf("nbdtest: certificate: %v", tlsErr)
	}
	return tlsServer.Clone(), tlsClient.Clone()
}

// selfSigned makes a CA-less self-signed certificate for "localhost".
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
