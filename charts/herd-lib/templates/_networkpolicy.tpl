{{/*
An ingress-only NetworkPolicy over the chart's pods: the chart's own rules, then one admitting
the scrapers in networkPolicy.metricsFrom to the named metrics port. No rule at all admits
nobody (`ingress: []`). Egress stays open (AWS APIs, the Kubernetes API, git).

  {{- include "herd-lib.networkPolicy" (dict "context" . "metricsPort" "http"
        "ingress" (list (dict "from" .Values.networkPolicy.ingressFrom "port" "http"))) }}

Each entry of `ingress` is {from: [peers], port: <port name>}; one with no peers is left out
(never "from anywhere").
*/}}
{{- define "herd-lib.networkPolicy" -}}
{{- $ := .context -}}{{/* the calling chart's root context, also inside range */}}
{{- $rules := list -}}
{{- range (concat (.ingress | default list) (list (dict "from" $.Values.networkPolicy.metricsFrom "port" .metricsPort))) }}
{{- if .from }}
{{- $rules = append $rules . }}
{{- end }}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "herd-lib.fullname" $ }}
  labels:
    {{- include "herd-lib.labels" $ | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "herd-lib.selectorLabels" $ | nindent 6 }}
  policyTypes: [Ingress]
  {{- if $rules }}
  ingress:
    {{- range $rules }}
    - from:
        {{- toYaml .from | nindent 8 }}
      ports:
        - port: {{ .port }}
          protocol: TCP
    {{- end }}
  {{- else }}
  ingress: []
  {{- end }}
{{- end }}
