// SPDX-License-Identifier: Apache-2.0

// Command podpath is the harness CLI: topologies, scenarios, captures.
package main

import (
	"os"

	"podpath/cmd/podpath/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
