{{/* Names, labels and images shared by the templates. */}}

{{- define "ambit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: the release name, plus the chart name unless it contains it. */}}
{{- define "ambit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Component names: the prefix cut to leave room for the longest suffix ("-controller", "-node-metrics"). */}}
{{- define "ambit.controller.fullname" -}}
{{- printf "%s-controller" (include "ambit.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{- define "ambit.nodeProxy.fullname" -}}
{{- printf "%s-node" (include "ambit.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{- define "ambit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ambit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ambit
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ("controller" or "node-proxy"); never change across upgrades. */}}
{{- define "ambit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ambit.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ambit.controller.selectorLabels" -}}
{{ include "ambit.selectorLabels" (dict "root" . "component" "controller") }}
{{- end -}}

{{- define "ambit.nodeProxy.selectorLabels" -}}
{{ include "ambit.selectorLabels" (dict "root" . "component" "node-proxy") }}
{{- end -}}

{{- define "ambit.controller.labels" -}}
{{ include "ambit.labels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "ambit.nodeProxy.labels" -}}
{{ include "ambit.labels" . }}
app.kubernetes.io/component: node-proxy
{{- end -}}

{{- define "ambit.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "ambit.controller.fullname" .) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ambit.nodeProxy.serviceAccountName" -}}
{{- if .Values.nodeProxy.serviceAccount.create -}}
{{- default (include "ambit.nodeProxy.fullname" .) .Values.nodeProxy.serviceAccount.name -}}
{{- else -}}
{{- required "nodeProxy.serviceAccount.name is required when nodeProxy.serviceAccount.create is false" .Values.nodeProxy.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: registry/repository, then @digest or :tag (default: the appVersion). */}}
{{- define "ambit.image" -}}
{{- $registry := .root.Values.global.imageRegistry -}}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The controller's address as node proxies dial it: its Service's cluster DNS name and gRPC port. */}}
{{- define "ambit.controller.address" -}}
{{- printf "%s.%s.svc:%d" (include "ambit.controller.fullname" .) .Release.Namespace (int .Values.controller.grpcPort) -}}
{{- end -}}

{{/* Audience of the node proxies' projected ServiceAccount tokens, checked by the controller (TokenReview). */}}
{{- define "ambit.tokenAudience" -}}
ambit
{{- end -}}

{{/* DNS name in the controller's serving certificate, which node proxies expect. */}}
{{- define "ambit.controller.serverName" -}}
{{- printf "%s.%s.svc" (include "ambit.controller.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* One ServiceMonitor endpoint: port name, path, and the serviceMonitor values. */}}
{{- define "ambit.serviceMonitor.endpoint" -}}
- port: {{ .port }}
  path: {{ .path }}
  {{- with .sm.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with .sm.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
{{- end }}
