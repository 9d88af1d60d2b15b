// SPDX-License-Identifier: Apache-2.0

package flowhash

import (
	"encoding/binary"
	"net/netip"
)

// LB is lb_hash() of bpf/lib/lb_hash.h: Linux's jhash_3words(saddr ^ s0, daddr ^ s1,
// (sport<<16 | dport) ^ s2, proto) over an IPv4 flow, keyed by the 12-byte seed, every
// word the value a little-endian load of its wire bytes gives (what the program reads).
func LB(seed [12]byte, src, dst netip.AddrPort, proto uint8) uint32 {
	le := binary.LittleEndian
	wire16 := func(p uint16) uint32 { return uint32(p>>8 | p<<8) }
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	a := le.Uint32(s4[:]) ^ le.Uint32(seed[0:4])
	b := le.Uint32(d4[:]) ^ le.Uint32(seed[4:8])
	c := (wire16(src.Port())<<16 | wire16(dst.Port())) ^ le.Uint32(seed[8:12])
	return JHash3Words(a, b, c, uint32(proto))
}

// JHash3Words is Linux's jhash_3words() (include/linux/jhash.h: __jhash_final over three
// words with the initial value initval + JHASH_INITVAL + 12).
func JHash3Words(a, b, c, initval uint32) uint32 {
	rol := func(w uint32, s uint) uint32 { return w<<s | w>>(32-s) }
	initval += 0xdeadbeef + 3<<2
	a, b, c = a+initval, b+initval, c+initval
	c ^= b
	c -= rol(b, 14)
	a ^= c
	a -= rol(c, 11)
	b ^= a
	b -= rol(a, 25)
	c ^= b
	c -= rol(b, 16)
	a ^= c
	a -= rol(c, 4)
	b ^= a
	b -= rol(a, 14)
	c ^= b
	c -= rol(b, 24)
	return c
}
