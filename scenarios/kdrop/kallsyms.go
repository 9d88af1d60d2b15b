// SPDX-License-Identifier: Apache-2.0

package kdrop

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// kallsyms are the kernel's text symbols sorted by address, for naming a drop's
// location; empty when /proc/kallsyms cannot be read or hides the addresses.
type kallsyms struct {
	addrs []uint64
	names []string
}

func readKallsyms() *kallsyms {
	k := &kallsyms{}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return k
	}
	defer f.Close()
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		syms = append(syms, sym{a, fields[2]})
	}
	slices.SortFunc(syms, func(a, b sym) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	for _, s := range syms {
		k.addrs = append(k.addrs, s.addr)
		k.names = append(k.names, s.name)
	}
	return k
}

// name is "symbol+0xoff" for addr, or the address in hex.
func (k *kallsyms) name(addr uint64) string {
	i, found := slices.BinarySearch(k.addrs, addr)
	if !found {
		i--
	}
	if i < 0 || i >= len(k.addrs) {
		return fmt.Sprintf("%#x", addr)
	}
	return fmt.Sprintf("%s+%#x", k.names[i], addr-k.addrs[i])
}

// bootTime is the wall time at which CLOCK_MONOTONIC (bpf_ktime_get_ns) was zero.
func bootTime() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano()))
}
