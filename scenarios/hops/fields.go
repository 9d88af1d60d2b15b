// SPDX-License-Identifier: Apache-2.0

package hops

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// HeaderFields names every header field a hop expectation can look at, as the
// `path` step's YAML spells them under outer/tunnel/inner. For a plain packet only
// outer.* is set; for a VXLAN or Geneve one, tunnel.* and inner.* too.
var HeaderFields = []string{
	"ethSrc", "ethDst", "src", "dst", "ttl", "tos", "id", "df", "length", "ipOptions",
	"proto", "sport", "dport", "tcpFlags", "icmpType",
}

// TunnelFields are the fields of the tunnel header a hop expectation can look at.
var TunnelFields = []string{"type", "vni", "options"}

// Fields reads a captured frame into "layer.field" -> value: outer.ttl = "63",
// outer.ipOptions = "DSR 10.0.0.1:30080", tunnel.vni = "12345", inner.src = "10.244.1.10".
// Values are rendered the way the YAML writes them (decimal numbers, dotted addresses,
// lowercase MACs, true/false).
func Fields(p gopacket.Packet) map[string]string {
	out := map[string]string{}
	prefix := "outer."
	ipSeen := false
	for _, l := range p.Layers() {
		switch h := l.(type) {
		case *layers.Ethernet:
			if _, ok := out[prefix+"ethSrc"]; !ok {
				out[prefix+"ethSrc"], out[prefix+"ethDst"] = h.SrcMAC.String(), h.DstMAC.String()
			}
		case *layers.IPv4:
			if ipSeen {
				continue
			}
			ipSeen = true
			out[prefix+"src"], out[prefix+"dst"] = h.SrcIP.String(), h.DstIP.String()
			out[prefix+"ttl"] = strconv.Itoa(int(h.TTL))
			out[prefix+"tos"] = strconv.Itoa(int(h.TOS))
			out[prefix+"id"] = strconv.Itoa(int(h.Id))
			out[prefix+"df"] = strconv.FormatBool(h.Flags&layers.IPv4DontFragment != 0)
			out[prefix+"length"] = strconv.Itoa(int(h.Length))
			out[prefix+"ipOptions"] = ipOptions(h.Options)
			out[prefix+"proto"] = protoName(h.Protocol)
		case *layers.UDP:
			out[prefix+"sport"], out[prefix+"dport"] = strconv.Itoa(int(h.SrcPort)), strconv.Itoa(int(h.DstPort))
		case *layers.TCP:
			out[prefix+"sport"], out[prefix+"dport"] = strconv.Itoa(int(h.SrcPort)), strconv.Itoa(int(h.DstPort))
			out[prefix+"tcpFlags"] = tcpFlags(h)
		case *layers.ICMPv4:
			out[prefix+"icmpType"] = h.TypeCode.String()
		case *layers.VXLAN:
			out["tunnel.type"], out["tunnel.vni"], out["tunnel.options"] = "vxlan", strconv.Itoa(int(h.VNI)), ""
			prefix, ipSeen = "inner.", false
		case *layers.Geneve:
			var opts []string
			for _, o := range h.Options {
				opts = append(opts, fmt.Sprintf("class %#04x type %d len %d", o.Class, o.Type, o.Length))
			}
			out["tunnel.type"], out["tunnel.vni"], out["tunnel.options"] = "geneve", strconv.Itoa(int(h.VNI)), strings.Join(opts, ", ")
			prefix, ipSeen = "inner.", false
		}
	}
	return out
}

func protoName(p layers.IPProtocol) string {
	switch p {
	case layers.IPProtocolICMPv4:
		return "icmp"
	case layers.IPProtocolTCP:
		return "tcp"
	case layers.IPProtocolUDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

func tcpFlags(h *layers.TCP) string {
	var f strings.Builder
	for _, x := range []struct {
		on bool
		c  byte
	}{{h.SYN, 'S'}, {h.FIN, 'F'}, {h.RST, 'R'}, {h.PSH, 'P'}, {h.ACK, '.'}} {
		if x.on {
			f.WriteByte(x.c)
		}
	}
	return f.String()
}

// MatchValue compares a field's value with what an expectation wants: equal text, or,
// when want starts with "~", the rest as a regular expression (RE2) found in got.
// A field the frame does not have is "" (so `ipOptions: ""` means "no option").
func MatchValue(want, got string) (bool, error) {
	if pat, ok := strings.CutPrefix(want, "~"); ok {
		re, err := regexp.Compile(pat)
		if err != nil {
			return false, fmt.Errorf("pattern %q: %w", pat, err)
		}
		return re.MatchString(got), nil
	}
	return want == got, nil
}
