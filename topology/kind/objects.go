// SPDX-License-Identifier: Apache-2.0

package kind

// The few Kubernetes API fields the manifests use, spelled as the API spells them. They
// are declared here instead of importing k8s.io/api, whose dependency tree is far
// larger than everything else podpath uses.

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type objectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type namespace struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
}

type configMap struct {
	typeMeta
	Metadata objectMeta        `json:"metadata"`
	Data     map[string]string `json:"data"`
}

type serviceAccount struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
}

type policyRule struct {
	APIGroups []string `json:"apiGroups"`
	Resources []string `json:"resources"`
	Verbs     []string `json:"verbs"`
}

type clusterRole struct {
	typeMeta
	Metadata objectMeta   `json:"metadata"`
	Rules    []policyRule `json:"rules"`
}

type roleRef struct {
	APIGroup string `json:"apiGroup"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

type subject struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

type clusterRoleBinding struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	RoleRef  roleRef    `json:"roleRef"`
	Subjects []subject  `json:"subjects"`
}

type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type podTemplate struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type updateStrategy struct {
	Type string `json:"type"`
}

type daemonSetSpec struct {
	Selector       labelSelector  `json:"selector"`
	UpdateStrategy updateStrategy `json:"updateStrategy"`
	Template       podTemplate    `json:"template"`
}

type daemonSet struct {
	typeMeta
	Metadata objectMeta    `json:"metadata"`
	Spec     daemonSetSpec `json:"spec"`
}

type pod struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type toleration struct {
	Operator string `json:"operator"`
}

type podSpec struct {
	NodeName                      string       `json:"nodeName,omitempty"`
	HostNetwork                   bool         `json:"hostNetwork,omitempty"`
	ServiceAccountName            string       `json:"serviceAccountName,omitempty"`
	PriorityClassName             string       `json:"priorityClassName,omitempty"`
	TerminationGracePeriodSeconds *int64       `json:"terminationGracePeriodSeconds,omitempty"`
	Tolerations                   []toleration `json:"tolerations,omitempty"`
	InitContainers                []container  `json:"initContainers,omitempty"`
	Containers                    []container  `json:"containers"`
	Volumes                       []volume     `json:"volumes,omitempty"`
}

type container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	ImagePullPolicy string           `json:"imagePullPolicy,omitempty"`
	Command         []string         `json:"command,omitempty"`
	Env             []envVar         `json:"env,omitempty"`
	SecurityContext *securityContext `json:"securityContext,omitempty"`
	ReadinessProbe  *probe           `json:"readinessProbe,omitempty"`
	VolumeMounts    []volumeMount    `json:"volumeMounts,omitempty"`
}

type envVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *envVarSource `json:"valueFrom,omitempty"`
}

type envVarSource struct {
	FieldRef *fieldRef `json:"fieldRef,omitempty"`
}

type fieldRef struct {
	FieldPath string `json:"fieldPath"`
}

type securityContext struct {
	Privileged *bool `json:"privileged,omitempty"`
}

type probe struct {
	Exec             *execAction `json:"exec,omitempty"`
	PeriodSeconds    int32       `json:"periodSeconds,omitempty"`
	TimeoutSeconds   int32       `json:"timeoutSeconds,omitempty"`
	FailureThreshold int32       `json:"failureThreshold,omitempty"`
}

type execAction struct {
	Command []string `json:"command"`
}

type volumeMount struct {
	Name             string `json:"name"`
	MountPath        string `json:"mountPath"`
	ReadOnly         bool   `json:"readOnly,omitempty"`
	MountPropagation string `json:"mountPropagation,omitempty"`
}

type volume struct {
	Name      string           `json:"name"`
	HostPath  *hostPathSource  `json:"hostPath,omitempty"`
	ConfigMap *configMapSource `json:"configMap,omitempty"`
}

type hostPathSource struct {
	Path string `json:"path"`
	Type string `json:"type,omitempty"`
}

type configMapSource struct {
	Name string `json:"name"`
}

type service struct {
	typeMeta
	Metadata objectMeta  `json:"metadata"`
	Spec     serviceSpec `json:"spec"`
}

type serviceSpec struct {
	Type                  string                 `json:"type"`
	ClusterIP             string                 `json:"clusterIP,omitempty"`
	ExternalTrafficPolicy string                 `json:"externalTrafficPolicy,omitempty"`
	HealthCheckNodePort   int                    `json:"healthCheckNodePort,omitempty"`
	InternalTrafficPolicy string                 `json:"internalTrafficPolicy,omitempty"`
	SessionAffinity       string                 `json:"sessionAffinity,omitempty"`
	SessionAffinityConfig *sessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
	Selector              map[string]string      `json:"selector"`
	Ports                 []servicePort          `json:"ports"`
}

type sessionAffinityConfig struct {
	ClientIP clientIPConfig `json:"clientIP"`
}

type clientIPConfig struct {
	TimeoutSeconds int `json:"timeoutSeconds"`
}

type servicePort struct {
	Name       string `json:"name,omitempty"`
	Protocol   string `json:"protocol"`
	Port       int    `json:"port"`
	TargetPort int    `json:"targetPort"`
	NodePort   int    `json:"nodePort,omitempty"`
}
