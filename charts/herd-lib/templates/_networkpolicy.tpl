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
{{- $ := .context -}}
{{- $rules := list -}}
{{- range (concat (.ingress | default list) (list (dict "from" $.Values.networkPolicy.metricsFrom "port" .metricsPort))) }}
{{- if .from }}
{{- $rules = append $rules (dict "from" .from "ports" (list (dict "port" .port "protocol" "TCP"))) }}
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
    {{- toYaml $rules | nindent 4 }}
  {{- else }}
  ingress: []
  {{- end }}
{{- end }}
