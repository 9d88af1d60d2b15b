// SPDX-License-Identifier: Apache-2.0

package config

import (
	"strings"
	"unicode"
)

// suggest returns the known key closest to an unknown name: the same key spelled
// as a Helm value or with '_' (respelled), or a near miss by edit distance. It
// returns "" when nothing is close.
func suggest(name string) (key string, respelled bool) {
	if k := kebab(name); k != name && lookupKey(k) != nil {
		return k, true
	}
	best, bestD := "", -1
	for _, k := range KnownKeys() {
		d := levenshtein(name, k.Name)
		if bestD < 0 || d < bestD {
			best, bestD = k.Name, d
		}
	}
	limit := 2
	switch n := len(name); {
	case n < 5:
		limit = 1
	case n >= 16:
		limit = 3
	}
	if bestD >= 0 && bestD <= limit {
		return best, false
	}
	return "", false
}

// kebab turns a Helm-style or snake_case name into cilium-config spelling:
// routingMode -> routing-mode, ipv4NativeRoutingCIDR -> ipv4-native-routing-cidr.
func kebab(s string) string {
	s = strings.NewReplacer("IPv4", "Ipv4", "IPv6", "Ipv6").Replace(s)
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case r == '_' || r == '.':
			b.WriteByte('-')
		case unicode.IsUpper(r):
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsLower(rs[i+1])
			if prevLower || nextLower {
				b.WriteByte('-')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
