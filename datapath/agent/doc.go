// Package agent is the per-node daemon: it loads and attaches the datapath, keeps the
// desired endpoints and nodes, and reconciles maps, routes and pod plumbing with them.
package agent
