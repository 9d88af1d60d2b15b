// Package maps reads and writes the datapath's shared maps (endpoints, ipcache,
// nodes; and the service load balancer's: services, backends, Maglev tables, reverse
// NAT, conntrack, SNAT) with netip types, over the layouts bpf2go generates from
// bpf/lib/maps.h, lb_maps.h, conntrack.h and nat.h.
package maps
