{{/*
A HorizontalPodAutoscaler of the chart's Deployment on CPU (values autoscaling.minReplicas,
.maxReplicas, .targetCPUUtilizationPercentage). The chart decides when: wrap the include in
`if .Values.autoscaling.enabled`.
*/}}
{{- define "herd-lib.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "herd-lib.fullname" . }}
  labels:
    {{- include "herd-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "herd-lib.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
