// Package maps reads and writes the datapath's shared maps (endpoints, ipcache,
// nodes) with netip types, over the layouts bpf2go generates from bpf/lib/maps.h.
package maps
