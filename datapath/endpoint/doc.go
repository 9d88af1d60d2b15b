// Package endpoint plumbs a pod into its node the way a CNI plugin does: a veth pair,
// the pod's address and default route, and the node's route back to the pod.
package endpoint
