{{/* The names of the release's objects: <release>-pier, or <release> when it says pier already. */}}
{{- define "pier.fullname" -}}
{{- if contains "pier" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pier" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pier.labels" -}}
app.kubernetes.io/name: pier
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include with (list . "router"). */}}
{{- define "pier.selector" -}}
app.kubernetes.io/name: pier
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "pier.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "pier.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "pier.fullname" .) -}}
{{- end -}}

{{- define "pier.databaseSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{ include "pier.fullname" . }}-postgresql
{{- else -}}
{{ .Values.database.existingSecret | default (printf "%s-database" (include "pier.fullname" .)) }}
{{- end -}}
{{- end -}}

{{/* The Secret the controller fills at start with the router's and the builder's service tokens (pierd --service-tokens-secret, keys router and builder). */}}
{{- define "pier.serviceTokensSecret" -}}
{{- printf "%s-service-tokens" (include "pier.fullname" .) -}}
{{- end -}}

{{/* The router pods' token: router.tokenSecret's key token, or the key router of the service tokens Secret. */}}
{{- define "pier.routerTokenSecret" -}}
{{- .Values.router.tokenSecret | default (include "pier.serviceTokensSecret" .) -}}
{{- end -}}

{{- define "pier.routerTokenKey" -}}
{{- if .Values.router.tokenSecret }}token{{ else }}router{{ end -}}
{{- end -}}

{{/* The builder pods' token: builder.tokenSecret's key token, or the key builder of the service tokens Secret. */}}
{{- define "pier.builderTokenSecret" -}}
{{- .Values.builder.tokenSecret | default (include "pier.serviceTokensSecret" .) -}}
{{- end -}}

{{- define "pier.builderTokenKey" -}}
{{- if .Values.builder.tokenSecret }}token{{ else }}builder{{ end -}}
{{- end -}}

{{- define "pier.publicURL" -}}
{{ .Values.publicURL | default (printf "http://%s" .Values.domain) }}
{{- end -}}

{{/* The hardened container securityContext of pierd (the image's user is 10001). */}}
{{- define "pier.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "pier.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pier.routerServiceAccountName" -}}
{{- .Values.router.serviceAccount.name | default (printf "%s-router" (include "pier.fullname" .)) -}}
{{- end -}}

{{/* The namespace of the build Pods (builder.enabled). */}}
{{- define "pier.buildNamespace" -}}
{{- .Values.builder.namespace | default (printf "%s-builds" .Release.Namespace) -}}
{{- end -}}

{{- define "pier.builderHostKeySecret" -}}
{{- .Values.builder.hostKey.existingSecret | default (printf "%s-builder-ssh" (include "pier.fullname" .)) -}}
{{- end -}}

{{/* The controller's internal listener as other pods reach it: build Pods (another namespace) and the builder's. */}}
{{- define "pier.internalURL" -}}
http://{{ include "pier.fullname" . }}-controller.{{ .Release.Namespace }}.svc:{{ .Values.controller.internalPort }}
{{- end -}}
