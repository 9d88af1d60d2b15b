// SPDX-License-Identifier: Apache-2.0

package agentcli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/policy"
)

// policyCmd is `podpath-agent policy apply -f FILE | delete NAME | list`, like
// `kubectl apply -f` for the agent's network policies.
func policyCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("want apply, delete or list")
	}
	fs := flag.NewFlagSet("policy "+args[0], flag.ContinueOnError)
	stateDir := fs.String("state-dir", defaultStateDir, "the agent's state dir (holds agent.sock)")
	file := fs.String("f", "", "apply: a YAML file of CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or NetworkPolicy objects (--- between them)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := agent.NewClient(agent.Socket(*stateDir))
	switch args[0] {
	case "apply":
		data, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		docs, err := policy.SplitDocuments(data)
		if err != nil {
			return err
		}
		for _, d := range docs {
			p, err := policy.ParseOne(d)
			if err != nil {
				return err
			}
			if err := c.PolicyUpsert(ctx, agent.Policy{Name: p.Name, YAML: string(d)}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s %s applied\n", p.Source, p.Name)
		}
		return nil
	case "delete":
		if fs.NArg() != 1 {
			return fmt.Errorf("delete: want one policy name")
		}
		return c.PolicyDelete(ctx, fs.Arg(0))
	case "list":
		list, err := c.Policies(ctx)
		if err != nil {
			return err
		}
		for _, p := range list {
			fmt.Fprintln(stdout, p.Name)
		}
		return nil
	}
	return fmt.Errorf("unknown policy command %q: want apply, delete or list", args[0])
}
