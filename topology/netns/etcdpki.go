// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is a certificate authority of one run, kept in dir (ca.crt, ca.key) with the
// certificates it issued beside it (<name>.crt, <name>.key).
type pki struct {
	dir string
}

// caFile is the CA certificate every member and client trusts.
func (p pki) caFile() string { return filepath.Join(p.dir, "ca.crt") }

func (p pki) files(name string) (cert, key string) {
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

// ensureCA creates the run's CA unless it exists.
func (p pki) ensureCA() error {
	if _, err := os.Stat(p.caFile()); err == nil {
		return nil
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("etcd ca: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("etcd ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podpath etcd CA " + filepath.Base(filepath.Dir(p.dir))},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, IsCA: true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("etcd ca certificate: %w", err)
	}
	return writeKeyPair(p.caFile(), filepath.Join(p.dir, "ca.key"), der, key)
}

// issue creates a certificate for name (server and client use) valid for ips, unless
// it exists, and returns its files.
func (p pki) issue(name string, ips ...net.IP) (cert, key string, err error) {
	cert, key = p.files(name)
	if _, err := os.Stat(cert); err == nil {
		return cert, key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	ca, caKey, err := p.load()
	if err != nil {
		return "", "", err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("etcd certificate %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...), DNSNames: []string{name, "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("etcd certificate %s: %w", name, err)
	}
	return cert, key, writeKeyPair(cert, key, der, k)
}

func (p pki) load() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(p.caFile())
	if err != nil {
		return nil, nil, fmt.Errorf("etcd ca: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(p.dir, "ca.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("etcd ca: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("etcd ca: not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd ca: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd ca key: %w", err)
	}
	return ca, key, nil
}

func writeKeyPair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
