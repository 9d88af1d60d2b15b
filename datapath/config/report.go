// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"strings"
)

// Finding is one remark about one key.
type Finding struct {
	// Key is the cilium-config key concerned ("" for the input as a whole).
	Key     string
	Message string
}

func (f Finding) String() string {
	if f.Key == "" {
		return f.Message
	}
	return f.Key + ": " + f.Message
}

// Report says how the input was read and what was not applied as written.
type Report struct {
	// Source says which input form was recognised and how many keys it gave.
	Source string
	// Notices are informational: recognised keys podpath ignores, legacy values
	// mapped to current ones, recovery details.
	Notices []Finding
	// Warnings deserve attention: unknown keys, settings podpath or Cilium would
	// ignore, behaviour that differs from Cilium's.
	Warnings []Finding
}

func (r *Report) notice(key, format string, args ...any) {
	r.Notices = append(r.Notices, Finding{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (r *Report) warn(key, format string, args ...any) {
	r.Warnings = append(r.Warnings, Finding{Key: key, Message: fmt.Sprintf(format, args...)})
}

// String renders the report, one finding a line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\n", r.Source)
	for _, f := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", f)
	}
	for _, f := range r.Notices {
		fmt.Fprintf(&b, "notice: %s\n", f)
	}
	return b.String()
}

// KeyError is one invalid value or contradictory combination.
type KeyError struct {
	Key string // the key at fault
	// Value is the key's value as given ("" when the key is missing).
	Value string
	// Reason says what is wrong and what is accepted, starting with the quoted
	// value when there is one.
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

// ValidationError collects every KeyError of one input.
type ValidationError struct {
	Errs []*KeyError
}

func (e *ValidationError) Error() string {
	if len(e.Errs) == 1 {
		return "validate cilium-config: " + e.Errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "validate cilium-config: %d problems:", len(e.Errs))
	for _, ke := range e.Errs {
		b.WriteString("\n  " + ke.Error())
	}
	return b.String()
}

// Unwrap returns the KeyErrors, for errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errs))
	for i, ke := range e.Errs {
		errs[i] = ke
	}
	return errs
}
