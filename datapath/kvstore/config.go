// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// EtcdConfig is Cilium's etcd-config file: the endpoints and the TLS files.
type EtcdConfig struct {
	Endpoints []string `json:"endpoints"`
	// CAFile verifies the servers: trusted-ca-file, or ca-file as the seed names it.
	CAFile       string `json:"trusted-ca-file"`
	LegacyCAFile string `json:"ca-file"`
	CertFile     string `json:"cert-file"`
	KeyFile      string `json:"key-file"`
}

// ParseEtcdConfig reads an etcd-config document (YAML).
func ParseEtcdConfig(data []byte) (*EtcdConfig, error) {
	var c EtcdConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse etcd-config: %w", err)
	}
	if c.CAFile == "" {
		c.CAFile = c.LegacyCAFile
	}
	if len(c.Endpoints) == 0 {
		return nil, errors.New("parse etcd-config: endpoints: at least one is required")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("parse etcd-config: cert-file and key-file go together")
	}
	return &c, nil
}

// Marshal writes the config in the seed's layout.
func (c *EtcdConfig) Marshal() []byte {
	var b strings.Builder
	b.WriteString("---\nendpoints:\n")
	for _, e := range c.Endpoints {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	if c.CAFile != "" {
		fmt.Fprintf(&b, "trusted-ca-file: %q\n", c.CAFile)
	}
	if c.CertFile != "" {
		fmt.Fprintf(&b, "cert-file: %q\nkey-file: %q\n", c.CertFile, c.KeyFile)
	}
	return []byte(b.String())
}

// CanonicalLabels is the label set as Cilium writes it in identity keys: every label
// with its source (k8s:), sorted by key, each followed by ';'. The pod's namespace is a
// label too (io.kubernetes.pod.namespace, default "default"), as in Cilium.
func CanonicalLabels(labels map[string]string, namespace string) string {
	if namespace == "" {
		namespace = "default"
	}
	all := map[string]string{"io.kubernetes.pod.namespace": namespace}
	for k, v := range labels {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "k8s:%s=%s;", k, all[k])
	}
	return b.String()
}
