// SPDX-License-Identifier: Apache-2.0

// Package configs is the catalog of cilium-config ConfigMaps that scenarios and tests
// name (vxlan, native-routing, dsr, ...), embedded so every binary carries them.
package configs
