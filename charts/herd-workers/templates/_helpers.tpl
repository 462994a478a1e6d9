{{/*
Names, labels, the ServiceAccount name, the security contexts and the manifests Herd's charts
share come from the herd-lib library chart (charts/herd-lib, linked as charts/herd-lib here):
`include "herd-lib.fullname" .` and the like; see charts/herd-lib/README.md. Only helpers that
are this chart's alone belong in this file.
*/}}

{{/* The thumbnail worker's pods: a name of their own, so no selector of the email worker's
(Deployment, Service, PDB, HPA) picks them up. */}}
{{- define "thumbnails.podSelector" -}}
app.kubernetes.io/name: {{ include "herd-lib.name" . }}-thumbnails
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "thumbnails.podLabels" -}}
helm.sh/chart: {{ include "herd-lib.chart" . }}
{{ include "thumbnails.podSelector" . }}
app.kubernetes.io/component: thumbnails
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herd
{{- end }}
