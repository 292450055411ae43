{{- define "sidekey.name" -}}sidekey-injector{{- end -}}

{{- define "sidekey.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sidekey.labels" -}}
app.kubernetes.io/name: sidekey-injector
app.kubernetes.io/part-of: sidekey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sidekey.selector" -}}
app.kubernetes.io/name: sidekey-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidekey.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}{{ required "tls.existingSecret is required with tls.mode=secret" .Values.tls.existingSecret }}{{- else -}}sidekey-injector-tls{{- end -}}
{{- end -}}

{{- define "sidekey.dnsNames" -}}
{{- $svc := include "sidekey.name" . -}}
{{- list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson -}}
{{- end -}}

{{- /*
The self-signed bootstrap: a CA and a serving certificate, generated once per
render and memoised in .Values so the Secret and the webhook's caBundle agree.
An upgrade keeps the Secret that exists (lookup), so the caBundle stays valid.
*/ -}}
{{- define "sidekey.selfSigned" -}}
{{- if not (hasKey .Values.tls "_generated") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "sidekey-injector-tls" -}}
{{- if and $existing (index ($existing.data | default dict) "ca.crt") -}}
{{- $_ := set .Values.tls "_generated" (dict "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") "ca" (index $existing.data "ca.crt")) -}}
{{- else -}}
{{- $ca := genCA "sidekey-injector-ca" (int .Values.tls.validityDays) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" (include "sidekey.name" .) .Release.Namespace) nil (include "sidekey.dnsNames" . | fromJsonArray) (int .Values.tls.validityDays) $ca -}}
{{- $_ := set .Values.tls "_generated" (dict "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) "ca" ($ca.Cert | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toJson .Values.tls._generated -}}
{{- end -}}
