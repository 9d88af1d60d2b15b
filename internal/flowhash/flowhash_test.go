// SPDX-License-Identifier: Apache-2.0

package flowhash

import (
	"net/netip"
	"testing"
)

// Every input of the hash changes it. That LB equals the BPF program's lb_hash() is
// proven where both run: datapath/progtest's Maglev fixtures predict the backend the
// program picks with LB, and maglev-consistency compares 10,000 flows on the wire.
func TestLB(t *testing.T) {
	seed := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	src, dst := netip.MustParseAddrPort("10.0.0.3:20000"), netip.MustParseAddrPort("10.96.100.100:80")
	a, b := LB(seed, src, dst, 17), LB(seed, src, dst, 6)
	if a == b {
		t.Errorf("the protocol does not change the hash: %#x", a)
	}
	if LB([12]byte{}, src, dst, 17) == a {
		t.Errorf("the seed does not change the hash: %#x", a)
	}
	if LB(seed, netip.AddrPortFrom(src.Addr(), 20001), dst, 17) == a {
		t.Errorf("the source port does not change the hash: %#x", a)
	}
}
