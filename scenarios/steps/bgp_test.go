// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"fmt"
	"testing"
)

// Output of BIRD 2.0.12's birdc, as captured from the catalog's bgp-native routers.
const (
	birdProtocols = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     17:03:23.537  
kernel1    Kernel     master4    up     17:03:23.537  
pp_node1   BGP        ---        up     17:03:24.101  Established   
pp_node3   BGP        ---        start  17:30:07.904  Active        Received: Peer de-configured
`
	birdRoutesAll = `BIRD 2.0.12 ready.
Table master4:
10.96.100.100/32     unicast [pp_node1 17:20:01.123] * (100) [AS65001i]
	via 10.0.1.2 on eth0
	Type: BGP univ
	BGP.as_path: 65001
                     unicast [pp_node2 17:20:01.456] (100) [AS65002i]
	via 10.0.2.2 on eth1
	Type: BGP univ
10.244.1.0/24        unicast [pp_node1 17:20:01.123] * (100) [AS65001i]
	via 10.0.1.2 on eth0
`
)

func TestParseBIRD(t *testing.T) {
	protos := parseBIRDProtocols(birdProtocols)
	tests := []struct{ name, got, want string }{
		{"protocols", fmt.Sprint(len(protos)), "2"},
		{"established", protos["pp_node1"].info, "Established"},
		{"ceased", protos["pp_node3"].info, "Active Received: Peer de-configured"},
		{"state", protos["pp_node3"].state, "start"},
		{"routes", routesString(parseBIRDRoutes(birdRoutesAll)), "10.96.100.100/32 pp_node1 10.0.1.2; 10.96.100.100/32 pp_node2 10.0.2.2; 10.244.1.0/24 pp_node1 10.0.1.2; "},
		{"no route", fmt.Sprint(len(parseBIRDRoutes("BIRD 2.0.12 ready.\nNetwork not found\n"))), "0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func routesString(rs []birdRoute) string {
	out := ""
	for _, r := range rs {
		out += fmt.Sprintf("%s %s %s; ", r.prefix, r.from, r.via)
	}
	return out
}
