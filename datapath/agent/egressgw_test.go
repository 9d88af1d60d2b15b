// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"podpath/datapath/config"
)

// Through the API: a bad CiliumEgressGatewayPolicy is a 400 naming the field path and
// the accepted values, a good one is stored; without enable-ipv4-egress-gateway the
// agent refuses it.
func TestEgressGatewayPolicyAPI(t *testing.T) {
	st, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.EnableIPv4EgressGateway = true
	a := &Agent{opts: Options{Node: "node1"}, cfg: c, store: st, problems: map[string]string{}}
	srv := httptest.NewServer(a.handler())
	defer srv.Close()
	put := func(name, yaml string) (int, string) {
		body, _ := json.Marshal(Policy{Name: name, YAML: yaml})
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/egress-gateway-policies/"+name, strings.NewReader(string(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	good := `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: egw}
spec:
  selectors: [{podSelector: {matchLabels: {app: egress}}}]
  destinationCIDRs: [192.168.200.0/24]
  egressGateway: {nodeSelector: {matchLabels: {egress-gateway: "true"}}, interface: eth0}
`
	code, msg := put("egw", strings.Replace(good, "192.168.200.0/24", "192.168.200.0/40", 1))
	if code != http.StatusBadRequest || !strings.Contains(msg, "spec.destinationCIDRs[0]") || !strings.Contains(msg, "want an IPv4 CIDR") {
		t.Errorf("bad CIDR: %d %q, want 400 naming spec.destinationCIDRs[0] and what is accepted", code, msg)
	}
	if code, msg := put("egw", good); code != http.StatusNoContent {
		t.Errorf("good policy: %d %q, want 204", code, msg)
	}
	if got := st.egressGWPolicies(); len(got) != 1 || got[0].Name != "egw" {
		t.Errorf("stored %v, want the policy", got)
	}
	a.cfg = config.Default()
	err = a.EgressGatewayPolicyUpsert(context.Background(), Policy{Name: "egw", YAML: good})
	var in *InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), "enable-ipv4-egress-gateway") {
		t.Errorf("without the key: %v, want an input error naming enable-ipv4-egress-gateway", err)
	}
}
