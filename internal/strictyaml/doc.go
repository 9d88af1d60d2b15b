// SPDX-License-Identifier: Apache-2.0

// Package strictyaml decodes YAML into Go structs strictly, reporting every problem
// with its field path, line and the accepted values.
package strictyaml
