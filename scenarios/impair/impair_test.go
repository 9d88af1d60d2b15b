// SPDX-License-Identifier: Apache-2.0

package impair

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// pair makes namespaces a (10.250.9.1) and b (10.250.9.2) joined by a veth pair.
func pair(t *testing.T) (a, b string) {
	a, b = fmt.Sprintf("pp-impair-a-%d", os.Getpid()), fmt.Sprintf("pp-impair-b-%d", os.Getpid())
	testrun.NewNetns(t, a)
	testrun.NewNetns(t, b)
	ha, hb := testrun.NetlinkAt(t, a), testrun.NetlinkAt(t, b)
	fd, err := netns.GetFromPath(nsutil.Path(b))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}); err != nil {
		t.Fatal(err)
	}
	for i, h := range []*netlink.Handle{ha, hb} {
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(fmt.Sprintf("10.250.9.%d/24", i+1))
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// send sends n datagrams from a to b with the impairment on b's eth0 and returns how
// many b received and the program's counters.
func send(t *testing.T, a, b string, n int, spec Spec) (int, Stats) {
	var imp *Link
	var conn *net.UDPConn
	if err := nsutil.Do(nsutil.Path(b), func() error {
		var err error
		if imp, err = Attach("eth0", spec); err != nil {
			return err
		}
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 250, 9, 2), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer imp.Close()
	defer conn.Close()
	got := make(chan int)
	go func() {
		buf := make([]byte, 2048)
		c := 0
		for {
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				got <- c
				return
			}
			c++
		}
	}()
	if err := nsutil.Do(nsutil.Path(a), func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 250, 9, 2), Port: 9999})
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := c.Write([]byte("impair probe")); err != nil {
				return err
			}
			if i%100 == 99 {
				time.Sleep(time.Millisecond) // let the receiver keep up: no socket overflow
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	received := <-got
	st, err := imp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return received, st
}

// Loss and duplication happen at the configured rates, the receiver sees exactly what
// the counters say, and the same seed gives the same decisions.
func TestLossAndDuplication(t *testing.T) {
	testutil.RequireRoot(t)
	a, b := pair(t)
	const n = 4000
	spec := Spec{LossPPM: 100_000, DupPPM: 50_000, Seed: 7}
	got, st := send(t, a, b, n, spec)
	t.Logf("sent %d, received %d; counters %+v", n, got, st)
	if st.Packets < n {
		t.Fatalf("the program met %d packets, %d were sent", st.Packets, n)
	}
	// Packets beyond the datagrams (ARP) may be lost or doubled too: that much slack.
	if want, slack := int(n-st.Lost+st.Duplicated), int(st.Packets-n); got < want-slack || got > want+slack {
		t.Errorf("received %d, want sent - lost + duplicated = %d (± %d other packets)", got, want, slack)
	}
	if st.Lost < n*7/100 || st.Lost > n*13/100 {
		t.Errorf("lost %d of %d, want about 10%%", st.Lost, n)
	}
	if st.Duplicated < n*3/100 || st.Duplicated > n*7/100 {
		t.Errorf("duplicated %d of %d, want about 5%%", st.Duplicated, n)
	}
	_, again := send(t, a, b, n, spec)
	if again.Lost != st.Lost || again.Duplicated != st.Duplicated {
		t.Errorf("same seed, other decisions: %+v then %+v", st, again)
	}
	_, other := send(t, a, b, n, Spec{LossPPM: spec.LossPPM, DupPPM: spec.DupPPM, Seed: 8})
	if other.Lost == st.Lost && other.Duplicated == st.Duplicated {
		t.Errorf("another seed gave the same counts %+v", other)
	}
	if got, st := send(t, a, b, 500, Spec{}); got != 500 || st.Lost != 0 {
		t.Errorf("no impairment: received %d of 500, counters %+v", got, st)
	}
}
