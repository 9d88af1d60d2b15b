// SPDX-License-Identifier: Apache-2.0

// Package netns is the default topology backend: it brings a spec up as a tree of
// network namespaces, bridges and veths on this machine and keeps each run's state under
// /run/podpath so that `podpath down`, `podpath exec` and `podpath clean` find it.
package netns
