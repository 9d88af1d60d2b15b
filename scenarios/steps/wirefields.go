// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Byte-level readers of IPv4 packets for the checks of fields the datapath writes:
// RFC 791 header checksum, RFC 793/768 checksums with their pseudo-header.

// ipv4Packet is an IPv4 packet inside an Ethernet frame, taken apart.
type ipv4Packet struct {
	hdr   []byte // the IPv4 header, options included
	l4    []byte // from the TCP/UDP/ICMP header to the end of the captured bytes
	proto uint8
	src   netip.Addr
	dst   netip.Addr
	whole bool // l4 holds the whole payload the total length announces
}

// parseIPv4Frame takes apart an Ethernet frame carrying IPv4 (no VLAN).
func parseIPv4Frame(b []byte) (ipv4Packet, bool) {
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
		return ipv4Packet{}, false
	}
	return parseIPv4(b[14:])
}

// parseIPv4 takes apart the IPv4 packet at the start of ip.
func parseIPv4(ip []byte) (ipv4Packet, bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return ipv4Packet{}, false
	}
	ihl := int(ip[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || len(ip) < ihl || tot < ihl {
		return ipv4Packet{}, false
	}
	end := min(len(ip), tot)
	return ipv4Packet{
		hdr: ip[:ihl], l4: ip[ihl:end], proto: ip[9],
		src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20])),
		whole: len(ip) >= tot,
	}, true
}

// ports are the TCP/UDP ports (0, 0 when the header is not there).
func (p ipv4Packet) ports() (uint16, uint16) {
	if len(p.l4) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(p.l4[0:2]), binary.BigEndian.Uint16(p.l4[2:4])
}

// onesSum adds b as 16-bit big-endian words to sum (RFC 1071), unfolded.
func onesSum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// headerChecksumErr says what is wrong with the IPv4 header checksum, nil when right.
func (p ipv4Packet) headerChecksumErr() error {
	if s := fold(onesSum(0, p.hdr)); s != 0xffff {
		return fmt.Errorf("IPv4 header checksum %#04x of %s -> %s is wrong (header sums to %#04x)", binary.BigEndian.Uint16(p.hdr[10:12]), p.src, p.dst, s)
	}
	return nil
}

// l4ChecksumErr checks the TCP or UDP checksum against the packet's addresses and
// bytes. A packet a local socket handed over with checksum offload
// (CHECKSUM_PARTIAL: veths keep it so up to the receiving socket) carries only the
// pseudo-header sum, as Linux writes it; that is right too when it matches the
// packet's current addresses, which is what address translation must update. A UDP
// checksum of 0 means none (RFC 768). Packets captured partly are not judged.
func (p ipv4Packet) l4ChecksumErr() error {
	var off int
	switch p.proto {
	case 6:
		off = 16
	case 17:
		off = 6
	default:
		return nil
	}
	if !p.whole || len(p.l4) < off+2 {
		return nil
	}
	field := binary.BigEndian.Uint16(p.l4[off : off+2])
	if p.proto == 17 && field == 0 {
		return nil
	}
	pseudo := onesSum(0, p.hdr[12:20]) + uint32(p.proto) + uint32(len(p.l4))
	if fold(onesSum(pseudo, p.l4)) == 0xffff {
		return nil // complete and right
	}
	if field == fold(pseudo) {
		return nil // CHECKSUM_PARTIAL: the pseudo-header of the current addresses
	}
	sp, dp := p.ports()
	return fmt.Errorf("%s checksum %#04x of %s:%d -> %s:%d is neither right nor the pseudo-header sum %#04x of a checksum-offloaded packet",
		map[uint8]string{6: "TCP", 17: "UDP"}[p.proto], field, p.src, sp, p.dst, dp, fold(pseudo))
}
