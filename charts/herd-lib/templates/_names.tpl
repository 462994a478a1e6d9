{{/*
Names, as `helm create` writes them, shared by Herd's charts. Every helper takes the calling
chart's root context (`.`), so `.Chart` and `.Values` are that chart's.
*/}}

{{/*
The chart's name (or nameOverride), truncated at 63 characters (DNS names).
*/}}
{{- define "herd-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name (or fullnameOverride), truncated at 63 characters. A release
whose name already holds the chart's name is not repeated (herd-api, not herd-api-herd-api).
*/}}
{{- define "herd-lib.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "herd-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ServiceAccount the pods run as: the chart's own (serviceAccount.create) or a given one.
*/}}
{{- define "herd-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herd-lib.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: image.repository at image.tag, or at the chart's appVersion.
*/}}
{{- define "herd-lib.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
