{{- define "modelport.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelport.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelport.labels" -}}
{{ include "modelport.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelport.secretName" -}}
{{- .Values.existingSecret | default (include "modelport.fullname" .) -}}
{{- end -}}

{{- define "modelport.ownSecret" -}}
{{- if or (and .Values.apiKeys (not .Values.existingSecret)) .Values.database.url -}}true{{- end -}}
{{- end -}}
