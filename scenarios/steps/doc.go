// SPDX-License-Identifier: Apache-2.0

// Package steps holds the step kinds scenario files use, one file per feature; each
// registers itself with scenarios.RegisterStep from init, so a blank import of this
// package makes them all available.
package steps
