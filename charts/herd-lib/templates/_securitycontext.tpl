{{/*
The hardened security contexts of every Herd pod and container (tests/test_charts.py checks
them): non-root as the image's user 10001, seccomp RuntimeDefault, a read-only root file
system and no capabilities. Programs write only to the emptyDir volumes their chart mounts.
Use as `securityContext: {{- include "herd-lib.podSecurityContext" . | nindent 8 }}`.
*/}}
{{- define "herd-lib.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "herd-lib.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}
