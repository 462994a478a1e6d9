{{/*
The recommended labels on every object, plus part-of: herd.
*/}}
{{- define "herd-lib.labels" -}}
helm.sh/chart: {{ include "herd-lib.chart" . }}
{{ include "herd-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herd
{{- end }}

{{/*
Selector labels: name and instance only, the labels that never change across upgrades
(a Deployment's selector is immutable).
*/}}
{{- define "herd-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herd-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
