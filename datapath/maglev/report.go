// SPDX-License-Identifier: Apache-2.0

package maglev

// Balance counts the entries of every backend present in table and returns the
// smallest and largest count (0, 0 for an empty table). max/min close to 1 means an
// even spread; backends absent from the table are not counted.
func Balance(table []uint32) (min, max int, perBackend map[uint32]int) {
	perBackend = make(map[uint32]int)
	for _, id := range table {
		perBackend[id]++
	}
	first := true
	for _, n := range perBackend {
		if first || n < min {
			min = n
		}
		if first || n > max {
			max = n
		}
		first = false
	}
	return min, max, perBackend
}

// Disruption compares two tables of one service, before (old) and after (new) a
// backend change, index by index. moved counts the entries whose backend changed:
// movedOfRemoved those that belonged to a backend absent from new (they must move),
// movedOfOthers those that belonged to a backend still present (ideally few: flows
// to surviving backends that get rerouted). If the lengths differ, the entries of
// old beyond len(new) count as moved too.
func Disruption(old, new []uint32) (moved, movedOfRemoved, movedOfOthers int) {
	present := make(map[uint32]bool, 64)
	for _, id := range new {
		present[id] = true
	}
	for j, id := range old {
		if j < len(new) && new[j] == id {
			continue
		}
		moved++
		if present[id] {
			movedOfOthers++
		} else {
			movedOfRemoved++
		}
	}
	return moved, movedOfRemoved, movedOfOthers
}
