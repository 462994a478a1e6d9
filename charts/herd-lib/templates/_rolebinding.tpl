{{/*
Binds the chart's Role (named as the chart, in config.tenantsNamespace) to its pods'
ServiceAccount. The Role itself stays in each chart: its verbs are that program's own.
*/}}
{{- define "herd-lib.tenantsRoleBinding" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "herd-lib.fullname" . }}
  namespace: {{ .Values.config.tenantsNamespace }}
  labels:
    {{- include "herd-lib.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "herd-lib.fullname" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "herd-lib.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}
