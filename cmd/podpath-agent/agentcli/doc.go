// Package agentcli implements the podpath-agent command line; cmd/podpath-agent only calls Main.
package agentcli
