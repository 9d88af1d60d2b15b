// SPDX-License-Identifier: Apache-2.0

// Package cnitest runs the podpath-cni binary the way a container runtime does, for the tests of datapath/cni and e2e/integration.
package cnitest
