// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Service is a Kubernetes Service of the scenario, backed by topology pods. The topology
// spec has no services yet: scenario data fills Options.Services, and nothing is
// generated while it is empty.
type Service struct {
	Name string `json:"name"`
	// Type is ServiceClusterIP (default) or ServiceNodePort.
	Type string `json:"type,omitempty"`
	// ClusterIP pins the service address inside the service subnet; empty: allocated.
	ClusterIP string `json:"clusterIP,omitempty"`
	// ExternalTrafficPolicy of a NodePort service: Cluster (default) or Local.
	ExternalTrafficPolicy string `json:"externalTrafficPolicy,omitempty"`
	// HealthCheckNodePort pins the health check node port of a NodePort service with
	// ExternalTrafficPolicy Local (30000-32767); 0: allocated.
	HealthCheckNodePort int `json:"healthCheckNodePort,omitempty"`
	// InternalTrafficPolicy: Cluster (default) or Local.
	InternalTrafficPolicy string `json:"internalTrafficPolicy,omitempty"`
	// SessionAffinity: None (default) or ClientIP; SessionAffinityTimeoutSeconds its
	// sessionAffinityConfig.clientIP.timeoutSeconds (1-86400; 0: Kubernetes' 10800).
	SessionAffinity               string        `json:"sessionAffinity,omitempty"`
	SessionAffinityTimeoutSeconds int           `json:"sessionAffinityTimeoutSeconds,omitempty"`
	Ports                         []ServicePort `json:"ports"`
	// Backends name the topology pods behind the service; each gets the label
	// service.podpath.io/<name>: "true", which the service selects.
	Backends []string `json:"backends"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name string `json:"name,omitempty"`
	// Protocol is TCP (default) or UDP.
	Protocol string `json:"protocol,omitempty"`
	Port     int    `json:"port"`
	// TargetPort is the backends' port; default Port.
	TargetPort int `json:"targetPort,omitempty"`
	// NodePort pins the node port of a NodePort service (30000-32767); 0: allocated.
	NodePort int `json:"nodePort,omitempty"`
}

// Service types.
const (
	ServiceClusterIP = "ClusterIP"
	ServiceNodePort  = "NodePort"
)

// serviceLabelPrefix + service name is the label that selects a service's backends.
const serviceLabelPrefix = "service.podpath.io/"

var dnsLabelRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validateServices checks the services against the pods of the spec and the service
// subnet; every problem is reported with its path (services[i].field).
func validateServices(svcs []Service, pods map[string]bool, serviceSubnet netip.Prefix) []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	seen := map[string]bool{}
	for i, s := range svcs {
		path := fmt.Sprintf("services[%d]", i)
		switch {
		case !dnsLabelRE.MatchString(s.Name):
			add(path+".name", "%q is not a DNS label (lowercase letters, digits and '-', starting with a letter, at most 63)", s.Name)
		case seen[s.Name]:
			add(path+".name", "%q is used twice", s.Name)
		}
		seen[s.Name] = true
		switch s.Type {
		case "", ServiceClusterIP, ServiceNodePort:
		default:
			add(path+".type", "%q is not one of %s (default), %s", s.Type, ServiceClusterIP, ServiceNodePort)
		}
		switch s.ExternalTrafficPolicy {
		case "", "Cluster":
		case "Local":
			if s.Type != ServiceNodePort {
				add(path+".externalTrafficPolicy", "Local applies to NodePort services only")
			}
		default:
			add(path+".externalTrafficPolicy", "%q is not one of Cluster (default), Local", s.ExternalTrafficPolicy)
		}
		if s.HealthCheckNodePort != 0 {
			if s.Type != ServiceNodePort || s.ExternalTrafficPolicy != "Local" {
				add(path+".healthCheckNodePort", "set without externalTrafficPolicy Local on a NodePort service")
			} else if s.HealthCheckNodePort < 30000 || s.HealthCheckNodePort > 32767 {
				add(path+".healthCheckNodePort", "%d is outside the node port range 30000-32767", s.HealthCheckNodePort)
			}
		}
		switch s.InternalTrafficPolicy {
		case "", "Cluster", "Local":
		default:
			add(path+".internalTrafficPolicy", "%q is not one of Cluster (default), Local", s.InternalTrafficPolicy)
		}
		switch s.SessionAffinity {
		case "", "None":
			if s.SessionAffinityTimeoutSeconds != 0 {
				add(path+".sessionAffinityTimeoutSeconds", "set without sessionAffinity ClientIP")
			}
		case "ClientIP":
			if s.SessionAffinityTimeoutSeconds < 0 || s.SessionAffinityTimeoutSeconds > 86400 {
				add(path+".sessionAffinityTimeoutSeconds", "%d is outside 1..86400", s.SessionAffinityTimeoutSeconds)
			}
		default:
			add(path+".sessionAffinity", "%q is not one of None (default), ClientIP", s.SessionAffinity)
		}
		if s.ClusterIP != "" {
			a, err := netip.ParseAddr(s.ClusterIP)
			if err != nil || !serviceSubnet.Contains(a) {
				add(path+".clusterIP", "%q is not an address inside the service subnet %s", s.ClusterIP, serviceSubnet)
			}
		}
		if len(s.Ports) == 0 {
			add(path+".ports", "at least one port is required")
		}
		for j, p := range s.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", path, j)
			if p.Port < 1 || p.Port > 65535 {
				add(pp+".port", "%d is outside 1..65535", p.Port)
			}
			if p.TargetPort < 0 || p.TargetPort > 65535 {
				add(pp+".targetPort", "%d is outside 1..65535", p.TargetPort)
			}
			switch p.Protocol {
			case "", "TCP", "UDP":
			default:
				add(pp+".protocol", "%q is not one of TCP (default), UDP", p.Protocol)
			}
			if p.NodePort != 0 {
				if s.Type != ServiceNodePort {
					add(pp+".nodePort", "set on a %s service: only NodePort services have node ports", orDefault(s.Type, ServiceClusterIP))
				} else if p.NodePort < 30000 || p.NodePort > 32767 {
					add(pp+".nodePort", "%d is outside the node port range 30000-32767", p.NodePort)
				}
			}
			if len(s.Ports) > 1 && p.Name == "" {
				add(pp+".name", "required when a service has more than one port")
			}
		}
		if len(s.Backends) == 0 {
			add(path+".backends", "at least one backend pod is required")
		}
		for j, b := range s.Backends {
			if !pods[b] {
				add(fmt.Sprintf("%s.backends[%d]", path, j), "%q is not a pod of the topology", b)
			}
		}
	}
	return errs
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
