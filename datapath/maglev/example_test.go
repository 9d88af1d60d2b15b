// SPDX-License-Identifier: Apache-2.0

package maglev_test

import (
	"fmt"

	"podpath/datapath/maglev"
)

func ExampleTable() {
	seed, err := maglev.Seed("JLfvgnHc2kaSUFaI") // bpf-lb-maglev-hash-seed
	if err != nil {
		panic(err)
	}
	backends := []maglev.Backend{
		{ID: 10, Weight: maglev.DefaultWeight},
		{ID: 11, Weight: maglev.DefaultWeight},
		{ID: 12, Weight: 0}, // terminating: no entries
	}
	table, err := maglev.Table(backends, 251, seed)
	if err != nil {
		panic(err)
	}
	lo, hi, per := maglev.Balance(table)
	fmt.Println(len(table), lo, hi, per[10], per[11], per[12])
	// Output: 251 125 126 126 125 0
}
