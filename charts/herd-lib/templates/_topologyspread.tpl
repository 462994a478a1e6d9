{{/*
Spread replicas over zones, then nodes (values topologySpread.maxSkew and
.whenUnsatisfiable). Use as
`topologySpreadConstraints: {{- include "herd-lib.topologySpreadConstraints" . | nindent 8 }}`.
*/}}
{{- define "herd-lib.topologySpreadConstraints" -}}
{{- range $i, $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
{{- if $i }}
{{ end -}}
- maxSkew: {{ $.Values.topologySpread.maxSkew }}
  topologyKey: {{ $key }}
  whenUnsatisfiable: {{ $.Values.topologySpread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "herd-lib.selectorLabels" $ | nindent 6 }}
{{- end }}
{{- end }}
