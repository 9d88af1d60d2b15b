// Package testutil holds small helpers shared by podpath's tests.
package testutil
