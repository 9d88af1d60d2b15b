// Package cli implements the podpath command line; cmd/podpath only calls Main.
package cli
