{{/*
The pods' ServiceAccount (values serviceAccount.name, .annotations: IRSA's role-arn). The
chart decides when: wrap the include in `if .Values.serviceAccount.create`.
*/}}
{{- define "herd-lib.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "herd-lib.serviceAccountName" . }}
  labels:
    {{- include "herd-lib.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
