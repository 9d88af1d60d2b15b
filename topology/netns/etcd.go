// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"podpath/internal/nsutil"
	"podpath/topology"
)

// Etcd runs Debian's etcd-server (etcd 3.4) and etcd-client (etcdctl): a real etcd,
// as Cilium's kvstore mode talks to, started from the binary a user's node would run.
const (
	etcdBinary    = "etcd"
	etcdctlBinary = "etcdctl"
	etcdPackages  = "etcd-server and etcd-client (apt-get install etcd-server etcd-client, or scripts/install-deps.sh)"
	// etcdReadyTimeout bounds the wait for a healthy cluster after a start.
	etcdReadyTimeout = 30 * time.Second
)

var _ topology.Etcd = (*Topology)(nil)

func (t *Topology) etcdDir() string { return filepath.Join(t.Dir(), "etcd") }
func (t *Topology) etcdPKI() pki    { return pki{dir: filepath.Join(t.etcdDir(), "pki")} }

// etcdTLS says whether the run's etcd clusters use TLS (a mesh's all do or none).
func (t *Topology) etcdTLS() bool {
	gs := t.spec.EtcdGroups()
	return len(gs) > 0 && gs[0].Spec.TLS
}

func (t *Topology) etcdScheme() string {
	if t.etcdTLS() {
		return "https"
	}
	return "http"
}

func (t *Topology) etcdIP(member string) string {
	ifs := t.ifaces[member]
	if len(ifs) == 0 {
		return ""
	}
	return ifs[0].Address.Addr().String()
}

// EtcdEndpoints are the client URLs of the first etcd cluster.
func (t *Topology) EtcdEndpoints() []string {
	gs := t.spec.EtcdGroups()
	if len(gs) == 0 {
		return nil
	}
	return t.etcdURLs(gs[0].Members)
}

// EtcdClusterEndpoints are the client URLs of a mesh cluster's own etcd.
func (t *Topology) EtcdClusterEndpoints(cluster string) []string {
	g, ok := t.spec.EtcdGroupOfCluster(cluster)
	if !ok {
		return nil
	}
	return t.etcdURLs(g.Members)
}

func (t *Topology) etcdURLs(members []string) []string {
	var out []string
	for _, m := range members {
		out = append(out, fmt.Sprintf("%s://%s:2379", t.etcdScheme(), t.etcdIP(m)))
	}
	return out
}

// EtcdClientFiles issues (once) a client certificate for name from the run's CA.
func (t *Topology) EtcdClientFiles(name string) (ca, cert, key string, err error) {
	if !t.spec.HasEtcd() {
		return "", "", "", errors.New("etcd: the topology declares none")
	}
	if !t.etcdTLS() {
		return "", "", "", nil
	}
	p := t.etcdPKI()
	if err := p.ensureCA(); err != nil {
		return "", "", "", err
	}
	cert, key, err = p.issue("client-" + name)
	return p.caFile(), cert, key, err
}

// etcdUp is the Up step that starts every member and waits for a healthy cluster.
func (u *upper) etcd(ctx context.Context) error {
	t := u.t
	if !t.spec.HasEtcd() {
		return nil
	}
	if _, err := exec.LookPath(etcdBinary); err != nil {
		return fmt.Errorf("etcd: %s not found: install Debian's %s", etcdBinary, etcdPackages)
	}
	if _, err := exec.LookPath(etcdctlBinary); err != nil {
		return fmt.Errorf("etcd: %s not found: install Debian's %s", etcdctlBinary, etcdPackages)
	}
	if t.etcdTLS() {
		p := t.etcdPKI()
		if err := p.ensureCA(); err != nil {
			return err
		}
		for _, m := range t.spec.EtcdMembers() {
			if _, _, err := p.issue(m, net.ParseIP(t.etcdIP(m))); err != nil {
				return err
			}
		}
	}
	return t.EtcdStart(ctx)
}

// etcdArgs is the command line of member m.
func (t *Topology) etcdArgs(m string) []string {
	var cluster []string
	g, _ := t.spec.EtcdGroupOf(m)
	for _, o := range g.Members {
		cluster = append(cluster, fmt.Sprintf("%s=%s://%s:2380", o, t.etcdScheme(), t.etcdIP(o)))
	}
	ip, s := t.etcdIP(m), t.etcdScheme()
	args := []string{etcdBinary,
		"--name", m, "--data-dir", filepath.Join(t.etcdDir(), m, "data"),
		"--listen-client-urls", fmt.Sprintf("%s://%s:2379", s, ip),
		"--advertise-client-urls", fmt.Sprintf("%s://%s:2379", s, ip),
		"--listen-peer-urls", fmt.Sprintf("%s://%s:2380", s, ip),
		"--initial-advertise-peer-urls", fmt.Sprintf("%s://%s:2380", s, ip),
		"--initial-cluster", strings.Join(cluster, ","),
		"--initial-cluster-token", "podpath-" + t.runID + g.Cluster, "--initial-cluster-state", "new",
		// Short elections: a member restart or a lost leader settles in about a second.
		"--heartbeat-interval", "100", "--election-timeout", "1000",
	}
	if t.etcdTLS() {
		p := t.etcdPKI()
		cert, key := p.files(m)
		args = append(args, "--client-cert-auth", "--trusted-ca-file", p.caFile(), "--cert-file", cert, "--key-file", key,
			"--peer-client-cert-auth", "--peer-trusted-ca-file", p.caFile(), "--peer-cert-file", cert, "--peer-key-file", key)
	}
	return args
}

func (t *Topology) etcdTargets(members []string) ([]string, error) {
	if !t.spec.HasEtcd() {
		return nil, errors.New("etcd: the topology declares none")
	}
	if len(members) == 0 {
		return t.spec.EtcdMembers(), nil
	}
	for _, m := range members {
		if _, ok := t.spec.EtcdGroupOf(m); !ok || t.etcdIP(m) == "" {
			return nil, fmt.Errorf("etcd: %q is not an etcd member (have: %s)", m, strings.Join(t.spec.EtcdMembers(), ", "))
		}
	}
	return members, nil
}

// EtcdStart starts members (default: all) that are not running and waits, up to
// etcdReadyTimeout, until every member of the cluster answers healthy.
func (t *Topology) EtcdStart(ctx context.Context, members ...string) error {
	members, err := t.etcdTargets(members)
	if err != nil {
		return err
	}
	for _, m := range members {
		if pids, _ := nsutil.PIDsIn(t.members[m].NsPath); len(pids) > 0 {
			continue
		}
		if err := os.MkdirAll(filepath.Join(t.etcdDir(), m), 0o700); err != nil {
			return fmt.Errorf("etcd %s: %w", m, err)
		}
		logf, err := os.OpenFile(t.etcdLog(m), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("etcd %s: %w", m, err)
		}
		args := t.etcdArgs(m)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		err = t.StartCmd(m, cmd)
		logf.Close()
		if err != nil {
			return fmt.Errorf("etcd %s: %w", m, err)
		}
		go func() { _ = cmd.Wait() }()
	}
	return t.etcdWaitHealthy(ctx)
}

func (t *Topology) etcdLog(m string) string { return filepath.Join(t.etcdDir(), m, "etcd.log") }

// etcdWaitHealthy polls `etcdctl endpoint health --cluster` until every member is
// healthy or the deadline passes (the error then carries the last answer and logs).
func (t *Topology) etcdWaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, etcdReadyTimeout)
	defer cancel()
	var out []byte
	var err error
	for {
		healthy := true
		for _, g := range t.spec.EtcdGroups() {
			out, err = t.Etcdctl(ctx, g.Members[0], "endpoint", "health", "--cluster")
			if err != nil || strings.Count(string(out), "is healthy") != len(g.Members) {
				healthy = false
				break
			}
		}
		if healthy {
			return nil
		}
		select {
		case <-ctx.Done():
			var logs []string
			for _, m := range t.spec.EtcdMembers() {
				logs = append(logs, m+": "+tailFile(t.etcdLog(m), 5))
			}
			return fmt.Errorf("etcd: not healthy within %v: %v: %s\n%s", etcdReadyTimeout, err, strings.TrimSpace(string(out)), strings.Join(logs, "\n"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EtcdStop SIGTERMs members (default: all), then SIGKILLs what is left after 5s.
func (t *Topology) EtcdStop(ctx context.Context, members ...string) error {
	members, err := t.etcdTargets(members)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	sig := syscall.SIGTERM
	for {
		left := 0
		for _, m := range members {
			pids, _ := nsutil.PIDsIn(t.members[m].NsPath)
			for _, pid := range pids {
				if pid != os.Getpid() {
					_ = syscall.Kill(pid, sig)
					left++
				}
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if sig == syscall.SIGKILL {
				return fmt.Errorf("etcd: %d processes still inside %v after SIGKILL", left, members)
			}
			sig, deadline = syscall.SIGKILL, time.Now().Add(5*time.Second)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Etcdctl runs etcdctl inside member against every endpoint of member's etcd cluster
// with the harness's own client certificate ("client-harness").
func (t *Topology) Etcdctl(ctx context.Context, member string, args ...string) ([]byte, error) {
	g, ok := t.spec.EtcdGroupOf(member)
	if !ok {
		return nil, fmt.Errorf("etcdctl: %q is not an etcd member (have: %s)", member, strings.Join(t.spec.EtcdMembers(), ", "))
	}
	argv := []string{etcdctlBinary, "--endpoints", strings.Join(t.etcdURLs(g.Members), ","), "--dial-timeout", "2s", "--command-timeout", "3s"}
	if t.etcdTLS() {
		ca, cert, key, err := t.EtcdClientFiles("harness")
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--cacert", ca, "--cert", cert, "--key", key)
	}
	return t.Exec(ctx, member, append(argv, args...)...)
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
