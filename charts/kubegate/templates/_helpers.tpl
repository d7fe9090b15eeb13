{{- define "kubegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubegate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubegate.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "kubegate.webshellSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webshell
{{- end -}}

{{- /* The webshell's own settings file (gateway/config/webshell_settings.py): the gateway's URL and
     CA, the clusters' names, its own certificate. Nothing of the gateway's keys or credentials. */ -}}
{{- define "kubegate.webshellSettings" -}}
{{- $fullname := include "kubegate.fullname" . -}}
{{- $default := .Values.defaultCluster | default (ternary .Values.inCluster.name "" .Values.inCluster.enabled) -}}
{{- $clusters := list -}}
{{- if .Values.inCluster.enabled }}{{ $clusters = append $clusters .Values.inCluster.name }}{{ end -}}
{{- range .Values.clusters }}{{ $clusters = append $clusters .name }}{{ end -}}
{{- $shell := dict
    "listen" (dict "host" "0.0.0.0" "port" (int .Values.webshell.port))
    "tls" (dict "cert_file" "/etc/kubegate-webshell/tls/tls.crt" "key_file" "/etc/kubegate-webshell/tls/tls.key")
    "gateway" (dict "url" (printf "https://%s.%s.svc:%d" $fullname .Release.Namespace (int .Values.service.port))
                    "ca_file" "/etc/kubegate-webshell/gateway-ca/ca.crt")
    "clusters" $clusters
    "kubectl" "kubectl"
    "sandbox" .Values.webshell.sandbox
    "state_dir" "/var/lib/kubegate-webshell"
    "idle_seconds" (int .Values.webshell.idleSeconds) "max_seconds" (int .Values.webshell.maxSeconds) -}}
{{- if $default }}{{ $_ := set $shell "default_cluster" $default }}{{ end -}}
{{- if .Values.webshell.publicURL }}{{ $_ := set $shell "public_url" .Values.webshell.publicURL }}{{ end -}}
{{- if .Values.webshell.oidcIssuer -}}
{{- $_ := set $shell "oidc" (dict "issuer" .Values.webshell.oidcIssuer "client_id" .Values.webshell.oidcClientID) -}}
{{- end -}}
{{- toYaml $shell -}}
{{- end -}}

{{- define "kubegate.serviceAccount" -}}
{{- .Values.serviceAccount.name | default (include "kubegate.fullname" .) -}}
{{- end -}}

{{- define "kubegate.host" -}}
{{- (urlParse .Values.publicURL).host | splitList ":" | first -}}
{{- end -}}

{{- define "kubegate.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "kubegate.fullname" .)) -}}
{{- end -}}

{{- define "kubegate.signingSecret" -}}
{{- .Values.signingKey.existingSecret | default (printf "%s-signing-key" (include "kubegate.fullname" .)) -}}
{{- end -}}

{{- define "kubegate.redisPasswordSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "kubegate.fullname" .)) -}}
{{- end -}}

{{- /* The pod's hardening, shared by the gateway and the bundled Redis. */ -}}
{{- define "kubegate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- /* The settings file: what the chart mounts where, then .Values.config over it. */ -}}
{{- define "kubegate.settings" -}}
{{- $clusters := list -}}
{{- $default := .Values.defaultCluster | default (ternary .Values.inCluster.name "" .Values.inCluster.enabled) -}}
{{- if .Values.inCluster.enabled -}}
{{- $clusters = append $clusters (dict "name" .Values.inCluster.name "server" "https://kubernetes.default.svc"
      "ca_file" "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
      "token_file" "/var/run/secrets/kubernetes.io/serviceaccount/token"
      "default" (eq $default .Values.inCluster.name)) -}}
{{- end -}}
{{- range .Values.clusters -}}
{{- $c := dict "name" .name "kubeconfig" (printf "/etc/kubegate/clusters/%s/%s" .name (.key | default "kubeconfig"))
      "default" (eq $default .name) -}}
{{- if .context }}{{ $_ := set $c "context" .context }}{{ end -}}
{{- $clusters = append $clusters $c -}}
{{- end -}}
{{- $store := dict -}}
{{- if .Values.redis.enabled -}}
{{- $store = dict "redis_url" (printf "redis://%s-redis:6379/0" (include "kubegate.fullname" .))
      "password_file" "/etc/kubegate/redis/password" -}}
{{- else if .Values.redis.url -}}
{{- $store = dict "redis_url" .Values.redis.url -}}
{{- if .Values.redis.existingSecret }}{{ $_ := set $store "password_file" "/etc/kubegate/redis/password" }}{{ end -}}
{{- end -}}
{{- $settings := dict
    "listen" (dict "host" "0.0.0.0" "port" 8443)
    "public_url" .Values.publicURL
    "state_dir" "/var/lib/kubegate"
    "tls" (dict "cert_file" "/etc/kubegate/tls/tls.crt" "key_file" "/etc/kubegate/tls/tls.key")
    "issuer" (dict "issuer" .Values.publicURL "signing_key_file" "/etc/kubegate/signing/signing.key" "algorithm" "ES256")
    "clusters" $clusters
    "authz" (dict "policy_dir" "/etc/kubegate/policies/authz" "reload_interval_seconds" .Values.policies.reloadIntervalSeconds)
    "gates" (dict "policy_dir" "/etc/kubegate/policies/gates")
    "audit" (dict "path" "/var/log/kubegate/audit.jsonl")
    "metrics" (dict "host" "0.0.0.0" "port" 9443)
-}}
{{- if .Values.oidc }}{{ $_ := set $settings "oidc" .Values.oidc }}{{ end -}}
{{- if $store }}{{ $_ := set $settings "store" $store }}{{ end -}}
{{- toYaml (mergeOverwrite $settings (deepCopy .Values.config)) -}}
{{- end -}}

{{/*
Whether the render can see the cluster (helm install/upgrade) or not (helm template, Argo CD, Flux):
`lookup` answers nothing without it, so a Secret generated "once" would be generated on every render.
*/}}
{{- define "kubegate.offline" -}}
{{- if not (lookup "v1" "Namespace" "" "kube-system") }}true{{ end -}}
{{- end }}

{{/* Fail a render without the cluster that would generate SECRET (its value to set in the message). */}}
{{- define "kubegate.keepOrFail" -}}
{{- if and (include "kubegate.offline" .root) (not .root.Values.generateSecretsWithoutCluster) -}}
{{- fail (printf "kubegate: rendered without the cluster (helm template, Argo CD, Flux), the chart would generate a new %s on every render, and every sync would rotate it. Set %s (or generateSecretsWithoutCluster=true to try the chart out). The chart README's GitOps section lists them all." .what .value) -}}
{{- end -}}
{{- end }}
