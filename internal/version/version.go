// SPDX-License-Identifier: Apache-2.0

// Package version tells which build of podpath is running.
package version

import "runtime/debug"

// Version is set at link time (-ldflags "-X podpath/internal/version.Version=v0.1.0");
// otherwise String derives it from the VCS stamp of the build.
var Version = ""

// String returns Version, or dev-<revision>[-dirty] from the build info.
func String() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}
