// SPDX-License-Identifier: Apache-2.0

//go:build tools

// Package tools pins the stock hubble CLI (github.com/cilium/cilium/hubble, the main
// package of the cilium module at the version in go.mod) so that `make hubble` builds
// it from this small module: `go install ...@v1.20.2` is refused because the cilium
// module has a replace directive, a module that requires it is not.
package tools

import _ "github.com/cilium/cilium/hubble"
