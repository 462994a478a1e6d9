{{/*
Expand the name of the chart.
*/}}
{{- define "openremote.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "openremote.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a component's objects: "<fullname>-<component>". The full name is cut to
40 characters so that "<name>-postgresql-headless" and the StatefulSet's
controller-revision-hash label stay within 63 characters.
Usage: include "openremote.componentName" (dict "context" . "component" "keycloak")
*/}}
{{- define "openremote.componentName" -}}
{{- printf "%s-%s" (include "openremote.fullname" .context | trunc 40 | trimSuffix "-") .component }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "openremote.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels (the recommended labels), put on every object.
*/}}
{{- define "openremote.labels" -}}
helm.sh/chart: {{ include "openremote.chart" . }}
{{ include "openremote.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: openremote
{{- end }}

{{/*
Selector labels: only app.kubernetes.io/name and app.kubernetes.io/instance.
*/}}
{{- define "openremote.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openremote.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of a component's objects: common labels plus app.kubernetes.io/component.
Usage: include "openremote.componentLabels" (dict "context" . "component" "manager")
*/}}
{{- define "openremote.componentLabels" -}}
{{ include "openremote.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of a component: selector labels plus app.kubernetes.io/component.
Usage: include "openremote.componentSelectorLabels" (dict "context" . "component" "postgresql")
*/}}
{{- define "openremote.componentSelectorLabels" -}}
{{ include "openremote.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use.
*/}}
{{- define "openremote.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "openremote.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the credentials (existing or generated).
*/}}
{{- define "openremote.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "openremote.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
An env var read from the credentials Secret.
Usage: include "openremote.secretEnv" (dict "context" . "name" "OR_DB_USER" "key" "databaseUsername")
*/}}
{{- define "openremote.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "openremote.secretName" .context }}
      key: {{ index .context.Values.secret.keys .key }}
{{- end }}

{{/*
"repository:tag" of an image; the tag defaults to .default.
Usage: include "openremote.image" (dict "image" .Values.manager.image "default" .Chart.AppVersion)
*/}}
{{- define "openremote.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .default | toString) }}
{{- end }}

{{/*
imagePullSecrets of a pod spec.
*/}}
{{- define "openremote.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Scheduling fields (nodeSelector, affinity, tolerations) of a component's pod spec.
Tolerations are a map in values (keys are only names); they are rendered as a list.
Usage: include "openremote.scheduling" .Values.manager
*/}}
{{- define "openremote.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
{{- range $name, $toleration := . }}
  - {{ toYaml $toleration | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Service DNS names used between the components.
*/}}
{{- define "openremote.postgresqlHost" -}}
{{- include "openremote.componentName" (dict "context" . "component" "postgresql") }}
{{- end }}

{{- define "openremote.keycloakHost" -}}
{{- include "openremote.componentName" (dict "context" . "component" "keycloak") }}
{{- end }}
