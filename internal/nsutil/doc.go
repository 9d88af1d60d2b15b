// Package nsutil creates, enters and removes named network namespaces without ever
// leaving a goroutine's OS thread in the wrong namespace.
package nsutil
