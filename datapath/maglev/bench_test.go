// SPDX-License-Identifier: Apache-2.0

package maglev

import (
	"fmt"
	"testing"
)

// BenchmarkTable measures one table computation, reported in ms/op. N=1000 exceeds
// the load limit of M=16381 and M=65521 (M > 100·N), which Table rejects; those cases
// time the same algorithm below the check. M=131071/N=1000 is what a 1000-backend
// service is actually allowed.
func BenchmarkTable(b *testing.B) {
	cases := []struct {
		m, n     int
		weighted bool
	}{
		{16381, 100, false},
		{16381, 1000, false},
		{65521, 1000, false},
		{131071, 1000, false},
		{16381, 100, true},
		{16381, 1000, true},
	}
	for _, c := range cases {
		name := fmt.Sprintf("M=%d/N=%d", c.m, c.n)
		if c.weighted {
			name += "/weighted"
		}
		b.Run(name, func(b *testing.B) {
			bs := equalBackends(c.n)
			if c.weighted {
				for i := range bs {
					bs[i].Weight = uint16(1 + i%5)
				}
			}
			checkLoad := c.m > LoadFactor*c.n
			seed := DefaultSeed()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := table(bs, c.m, seed, checkLoad); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
		})
	}
}
