// SPDX-License-Identifier: Apache-2.0

package nsutil

import (
	"fmt"
	"net"
	"os"
	"testing"
)

func TestCreateDoDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	name := fmt.Sprintf("pptest-nsutil-%d", os.Getpid())
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(name) })

	rootLinks, _ := net.Interfaces()
	var inside []net.Interface
	if err := Do(Path(name), func() error {
		var err error
		inside, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0].Name != "lo" || inside[0].Flags&net.FlagUp == 0 {
		t.Fatalf("new namespace should hold only lo, up; got %+v", inside)
	}
	after, _ := net.Interfaces()
	if len(after) != len(rootLinks) {
		t.Fatalf("calling thread's namespace changed: %d links before, %d after", len(rootLinks), len(after))
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Path(name)); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still present after Delete: %v", name, err)
	}
}
