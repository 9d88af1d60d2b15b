// SPDX-License-Identifier: Apache-2.0

// Command podpath-cni is the CNI plugin of podpath: the container runtime runs it, it
// asks the node's podpath-agent to attach or detach the pod.
package main

import (
	"os"

	"podpath/datapath/cni"
)

func main() {
	if err := cni.Main(); err != nil {
		// CNI: the error goes to stdout as JSON, the exit status is 1.
		_ = err.Print()
		os.Exit(1)
	}
}
