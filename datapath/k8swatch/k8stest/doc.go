// SPDX-License-Identifier: Apache-2.0

// Package k8stest builds the Kubernetes objects and runs the watcher of the tests of datapath/k8swatch and e2e/integration, without importing k8swatch so that k8swatch's own tests can use it.
package k8stest
