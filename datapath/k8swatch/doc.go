// SPDX-License-Identifier: Apache-2.0

// Package k8swatch feeds the agent from Kubernetes: Nodes become agent nodes,
// Services with their EndpointSlices agent services, and the pods of the node tell
// CNI ADD which address they ask for.
package k8swatch
