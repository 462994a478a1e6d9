{{/*
A PodDisruptionBudget over the chart's pods (value podDisruptionBudget.minAvailable).
*/}}
{{- define "herd-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "herd-lib.fullname" . }}
  labels:
    {{- include "herd-lib.labels" . | nindent 4 }}
spec:
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "herd-lib.selectorLabels" . | nindent 6 }}
{{- end }}
