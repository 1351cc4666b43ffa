{{/* Name of the chart, or nameOverride. */}}
{{- define "arcagent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object: the release name, or fullnameOverride; the chart name is not repeated. */}}
{{- define "arcagent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "arcagent.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "arcagent.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Helm's recommended labels; the plain manifest (kubectlManifest) does not claim Helm manages it. */}}
{{- define "arcagent.labels" -}}
{{ include "arcagent.selectorLabels" . }}
app.kubernetes.io/part-of: cluster-connect
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- if not .Values.kubectlManifest }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}
{{- end -}}

{{- define "arcagent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arcagent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The agent's image reference; a digest pins it. */}}
{{- define "arcagent.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "arcagent.keySecret" -}}{{ include "arcagent.fullname" . }}-key{{- end -}}
{{- define "arcagent.enrollSecret" -}}{{ default (printf "%s-enroll" (include "arcagent.fullname" .)) .Values.enrollment.existingSecret }}{{- end -}}
{{- define "arcagent.caConfigMap" -}}{{ default (printf "%s-relay-ca" (include "arcagent.fullname" .)) .Values.relay.existingCaConfigMap }}{{- end -}}

{{/* Cluster-scoped objects carry the namespace in their name: two releases in two namespaces must not collide. */}}
{{- define "arcagent.impersonator" -}}{{ printf "%s-%s-impersonator" .Release.Namespace (include "arcagent.fullname" .) | trunc 63 | trimSuffix "-" }}{{- end -}}
