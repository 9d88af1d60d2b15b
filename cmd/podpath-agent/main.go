// SPDX-License-Identifier: Apache-2.0

// Command podpath-agent is the per-node datapath agent.
package main

import (
	"os"

	"podpath/cmd/podpath-agent/agentcli"
)

func main() {
	os.Exit(agentcli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
