// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"fmt"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Build serializes layers into a frame with lengths and checksums computed, the
// transport checksums over the IPv4 pseudo-header included.
func Build(ls ...gopacket.SerializableLayer) ([]byte, error) {
	var ip *layers.IPv4
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			if ip == nil {
				ip = l
			}
		case *layers.TCP:
			if ip != nil {
				_ = l.SetNetworkLayerForChecksum(ip)
			}
		case *layers.UDP:
			if ip != nil {
				_ = l.SetNetworkLayerForChecksum(ip)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, fmt.Errorf("build packet: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// MustBuild is Build for fixtures known to be well-formed.
func MustBuild(ls ...gopacket.SerializableLayer) []byte {
	b, err := Build(ls...)
	if err != nil {
		panic(err)
	}
	return b
}
