// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// daemonStartTimeout bounds the wait for a routing daemon's control socket.
const daemonStartTimeout = 10 * time.Second

// ErrDaemonMissing: a router's BGP daemon is not installed on this machine.
var ErrDaemonMissing = errors.New("BGP daemon not installed")

// checkBGPDaemons fails before anything is created when a router asks for a daemon
// this machine lacks, naming the Debian package that ships it.
func checkBGPDaemons(r *topology.Spec) error {
	for i, rt := range r.Routers {
		if rt.BGP == nil {
			continue
		}
		bins, pkg := []string{"bird", "birdc"}, topology.BIRDPackage
		if rt.BGP.Daemon == topology.BGPDaemonFRR {
			bins, pkg = []string{frrZebra, frrBGPD, "vtysh"}, topology.FRRPackage
		}
		for _, bin := range bins {
			if _, err := exec.LookPath(bin); err != nil {
				return fmt.Errorf("routers[%d] %s: bgp.daemon %s: %s not found: %w (install the Debian package %s: apt-get install %s, or scripts/install-deps.sh)",
					i, rt.Name, rt.BGP.Daemon, bin, ErrDaemonMissing, pkg, pkg)
			}
		}
	}
	return nil
}

// FRR's daemons live outside PATH in Debian's package.
const (
	frrZebra = "/usr/lib/frr/zebra"
	frrBGPD  = "/usr/lib/frr/bgpd"
	// frrUser: FRR's daemons drop to this user, whose group frrvty may use vtysh's
	// sockets (root is not in it: run as root they refuse the vty sockets).
	frrUser = "frr"
)

// bgp starts BIRD in every BGP router's namespace (`bird -f -c CONF -s SOCK -P PID`),
// with the configuration topology.BIRDConfig generates, its files under the run's
// folder; it waits until each daemon answers on its control socket. The processes
// are recorded in the run's state: Down and Clean kill them with the namespace.
func (u *upper) bgp(ctx context.Context) error {
	for _, rt := range u.t.spec.Routers {
		if rt.BGP == nil {
			continue
		}
		if rt.BGP.Daemon == topology.BGPDaemonFRR {
			if err := u.frr(ctx, rt); err != nil {
				return err
			}
			continue
		}
		conf, err := topology.BIRDConfig(u.t.spec, rt.Name)
		if err != nil {
			return err
		}
		dir := topology.BGPDaemonDir(u.t.Dir(), rt.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bird in %s: %w", rt.Name, err)
		}
		confPath := filepath.Join(dir, "bird.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("bird in %s: %w", rt.Name, err)
		}
		logf, err := os.Create(filepath.Join(dir, "bird.log"))
		if err != nil {
			return fmt.Errorf("bird in %s: %w", rt.Name, err)
		}
		sock := topology.BIRDSocket(u.t.Dir(), rt.Name)
		u.t.progress("starting BIRD in router %s (AS %d, %d neighbours), control socket %s", rt.Name, rt.BGP.ASN, len(u.t.spec.BGPNeighbors(rt.Name)), sock)
		cmd := exec.Command("bird", "-f", "-c", confPath, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := u.t.StartCmd(rt.Name, cmd); err != nil {
			logf.Close()
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); logf.Close() }()
		deadline := time.Now().Add(daemonStartTimeout)
		for {
			out, err := u.t.Exec(ctx, rt.Name, "birdc", "-s", sock, "show", "status")
			if err == nil {
				break
			}
			select {
			case werr := <-done:
				log, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
				return fmt.Errorf("bird in %s exited: %v: %s", rt.Name, werr, log)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bird in %s: no answer on %s within %s: %s", rt.Name, sock, daemonStartTimeout, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// frr starts FRR in router's namespace: zebra, then bgpd, each with its part of the
// configuration topology.FRRConfig generates, their vty sockets, zserv socket, pid
// files and logs in the router's folder of the run (owned by FRR's user, which the
// daemons drop to); it waits until vtysh reaches both. The processes are recorded in
// the run's state: Down and Clean kill them with the namespace.
func (u *upper) frr(ctx context.Context, rt topology.RouterSpec) error {
	zconf, bconf, err := topology.FRRConfig(u.t.spec, rt.Name)
	if err != nil {
		return err
	}
	dir := topology.BGPDaemonDir(u.t.Dir(), rt.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("frr in %s: %w", rt.Name, err)
	}
	usr, err := user.Lookup(frrUser)
	if err != nil {
		return fmt.Errorf("frr in %s: user %s: %w (the Debian package %s creates it)", rt.Name, frrUser, err, topology.FRRPackage)
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(usr.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("frr in %s: %w", rt.Name, err)
	}
	u.t.progress("starting FRR (zebra, bgpd) in router %s (AS %d, %d neighbours), vty sockets in %s", rt.Name, rt.BGP.ASN, len(u.t.spec.BGPNeighbors(rt.Name)), dir)
	for _, d := range []struct{ name, bin, conf string }{{"zebra", frrZebra, zconf}, {"bgpd", frrBGPD, bconf}} {
		confPath := filepath.Join(dir, d.name+".conf")
		if err := os.WriteFile(confPath, []byte(d.conf), 0o644); err != nil {
			return fmt.Errorf("frr in %s: %w", rt.Name, err)
		}
		logf, err := os.Create(filepath.Join(dir, d.name+".log"))
		if err != nil {
			return fmt.Errorf("frr in %s: %w", rt.Name, err)
		}
		cmd := exec.Command(d.bin, "-f", confPath, "-i", filepath.Join(dir, d.name+".pid"), "-z", filepath.Join(dir, "zserv.api"),
			"--vty_socket", dir, "-u", frrUser, "-g", frrUser, "-P", "0")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := u.t.StartCmd(rt.Name, cmd); err != nil {
			logf.Close()
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); logf.Close() }()
		deadline := time.Now().Add(daemonStartTimeout)
		for {
			out, err := u.t.Exec(ctx, rt.Name, "vtysh", "--vty_socket", dir, "-d", d.name, "-c", "show version")
			if err == nil {
				break
			}
			select {
			case werr := <-done:
				log, _ := os.ReadFile(filepath.Join(dir, d.name+".log"))
				return fmt.Errorf("%s in %s exited: %v: %s", d.name, rt.Name, werr, log)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s: vtysh got no answer within %s: %s", d.name, rt.Name, daemonStartTimeout, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
