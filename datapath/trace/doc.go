// Package trace decodes the datapath's trace records from its ring buffer and names
// their drop reasons, observation points and verdicts from the objects' own BTF.
package trace
