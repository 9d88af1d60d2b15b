// SPDX-License-Identifier: Apache-2.0

package nsutil

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
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

// The servers listen inside the namespace: reachable there, not from the test's own.
func TestServeInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	name := fmt.Sprintf("pptest-serve-%d", os.Getpid())
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(name) })
	ln, err := ServeTCP(Path(name), "127.0.0.1:7001", func(c net.Conn) { _, _ = io.Copy(c, c) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := ServeUDP(Path(name), "127.0.0.1:7001", func(b []byte, _ net.Addr) []byte { return append([]byte("re: "), b...) })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, tc := range []struct{ network, want string }{{"tcp4", "hello"}, {"udp4", "re: hello"}} {
		var got string
		err := Do(Path(name), func() error {
			c, err := net.DialTimeout(tc.network, "127.0.0.1:7001", time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("hello")); err != nil {
				return err
			}
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			got = string(buf[:n])
			return err
		})
		if err != nil || got != tc.want {
			t.Errorf("%s in the namespace: %q (%v), want %q", tc.network, got, err, tc.want)
		}
	}
	if c, err := net.DialTimeout("tcp4", "127.0.0.1:7001", 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("the server is reachable from the test's own namespace")
	}
}
