// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"podpath/cmd/podpath/cli"
)

// A user's own topology with a BGP router, not one of the catalog's: names with dashes
// (BIRD's protocol names), an iBGP route reflector of the nodes' own ASN, a hold time
// of its own, and a user's cilium-config file. `podpath run --topology FILE --config
// FILE` peers the agents as the file says, waits for the router's table and runs the
// generic checks across the router.
const userBGPTopology = `name: user-bgp-edge
podNetwork: agent
bgp: {holdTime: 6}
segments:
  - {name: rack-a, cidr: 192.168.10.0/24}
  - {name: rack-b, cidr: 192.168.20.0/24}
routers:
  - name: edge-rtr
    bgp: {asn: 64512, routeReflector: true}
    interfaces: [{segment: rack-a}, {segment: rack-b}]
nodes:
  - name: worker-a
    podCIDR: 10.42.1.0/24
    bgp: {asn: 64512}
    interfaces: [{segment: rack-a}]
    pods: [{name: web-a}]
  - name: worker-b
    podCIDR: 10.42.2.0/24
    bgp: {asn: 64512}
    interfaces: [{segment: rack-b}]
    pods: [{name: web-b}]
`

const userBGPConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: cilium-config
  namespace: kube-system
data:
  routing-mode: native
  ipv4-native-routing-cidr: 10.42.0.0/16
  auto-direct-node-routes: "false"
  enable-bgp-control-plane: "true"
  enable-ipv4: "true"
  enable-ipv6: "false"
`

var _ = Describe("podpath run --topology with a user's BGP topology", Label("bgp", "generic", "topology"), func() {
	It("peers the agents with the user's router and passes the generic checks across it", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		topo, cfg := filepath.Join(dir, "my-topology.yaml"), filepath.Join(dir, "my-config.yaml")
		Expect(os.WriteFile(topo, []byte(userBGPTopology), 0o600)).To(Succeed())
		Expect(os.WriteFile(cfg, []byte(userBGPConfig), 0o600)).To(Succeed())
		var out, errs bytes.Buffer
		code := cli.Main([]string{"run", "--topology", topo, "--config", cfg, "--json",
			"--artifacts", filepath.Join(artifacts, "user-bgp-edge")}, strings.NewReader(""), &out, &errs)
		GinkgoWriter.Print(errs.String())
		var res struct {
			Passed, Failed int
			Checks         []struct {
				Name     string
				Passed   bool
				Evidence string
			}
		}
		Expect(json.Unmarshal(out.Bytes(), &res)).To(Succeed(), out.String())
		var failed, bgp []string
		for _, c := range res.Checks {
			if !c.Passed {
				failed = append(failed, c.Name+": "+c.Evidence)
			}
			if strings.Contains(c.Name, "bgp:") {
				bgp = append(bgp, c.Name)
			}
		}
		Expect(failed).To(BeEmpty(), strings.Join(failed, "\n"))
		Expect(code).To(Equal(0))
		// The router's BIRD learned both PodCIDRs from the user's nodes, and each node
		// the other's through the reflector.
		Expect(strings.Join(bgp, "\n")).To(And(
			ContainSubstring("edge-rtr's BIRD table holds worker-a's PodCIDR 10.42.1.0/24 via 192.168.10.2"),
			ContainSubstring("edge-rtr's BIRD table holds worker-b's PodCIDR 10.42.2.0/24 via 192.168.20.2"),
			ContainSubstring("worker-a's kernel routes worker-b's PodCIDR 10.42.2.0/24"),
		))
		Expect(res.Passed).To(BeNumerically(">=", 10))
	})
})
