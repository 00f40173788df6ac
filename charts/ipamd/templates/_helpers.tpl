{{/*
Names and labels.
*/}}
{{- define "ipamd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fullname: the release name when it already contains the chart name ("ipamd"), so the
common `helm install ipamd ...` gives objects named "ipamd" rather than "ipamd-ipamd".
*/}}
{{- define "ipamd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ipamd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: never change them between chart versions (DaemonSet selectors are immutable). */}}
{{- define "ipamd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipamd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ipamd.labels" -}}
helm.sh/chart: {{ include "ipamd.chart" . }}
{{ include "ipamd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ipamd
{{- end -}}

{{- define "ipamd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ipamd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ipamd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Fixed paths inside the container. The socket dir is mounted at the daemon's default so
`kubectl exec ... ipamctl` works without flags.
*/}}
{{- define "ipamd.socketPath" -}}/run/ipamd/ipamd.sock{{- end -}}
{{- define "ipamd.configPath" -}}/etc/ipamd/config.yaml{{- end -}}
{{- define "ipamd.tokenDir" -}}/etc/ipamd-tokens{{- end -}}
{{- define "ipamd.sqliteDir" -}}/var/lib/ipamd{{- end -}}
{{- define "ipamd.cniDest" -}}/host/opt/cni/bin{{- end -}}

{{/*
Is the TCP listener reachable off the node? Yes when something outside the node must
reach it: Prometheus (metrics) or remote API users.
*/}}
{{- define "ipamd.listenerExposed" -}}
{{- if or .Values.metrics.enabled .Values.api.listen.enabled -}}true{{- end -}}
{{- end -}}

{{/* The --listen value: HOST:PORT, IPv6 hosts in brackets. */}}
{{- define "ipamd.listenAddress" -}}
{{- $host := .Values.listener.host -}}
{{- if not $host -}}
{{- $host = ternary "0.0.0.0" "127.0.0.1" (eq (include "ipamd.listenerExposed" .) "true") -}}
{{- end -}}
{{- if and (contains ":" $host) (not (hasPrefix "[" $host)) -}}
{{- $host = printf "[%s]" $host -}}
{{- end -}}
{{- printf "%s:%d" $host (int .Values.listener.port) -}}
{{- end -}}

{{- define "ipamd.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "ipamd.fullname" .)) .Values.api.tokens.existingSecret -}}
{{- end -}}

{{/*
The declarative file given to --config. Only the three top-level keys the daemon knows;
empty lists are written out so that emptying a list in values deletes config-origin
objects on the next start, as the daemon documents.
*/}}
{{- define "ipamd.configFile" -}}
subnets:
{{- with .Values.ipam.subnets }}
{{ toYaml . | indent 2 }}
{{- else }} []
{{- end }}
pools:
{{- with .Values.ipam.pools }}
{{ toYaml . | indent 2 }}
{{- else }} []
{{- end }}
reservations:
{{- with .Values.ipam.reservations }}
{{ toYaml . | indent 2 }}
{{- else }} []
{{- end }}
{{- end -}}

{{/*
How many nodes the DaemonSet will land on, as far as the live cluster tells: nodes whose
labels match nodeSelector (tolerations default to "everything"; affinity is not
evaluated). 0 when Helm renders offline (helm template, --dry-run=client): lookup then
returns nothing.
*/}}
{{- define "ipamd.liveNodeCount" -}}
{{- $nodes := lookup "v1" "Node" "" "" -}}
{{- $count := 0 -}}
{{- range (get $nodes "items" | default list) -}}
{{- $labels := .metadata.labels | default dict -}}
{{- $match := true -}}
{{- range $key, $want := $.Values.nodeSelector -}}
{{- if ne (toString (get $labels $key)) (toString $want) -}}
{{- $match = false -}}
{{- end -}}
{{- end -}}
{{- if $match -}}
{{- $count = add1 $count -}}
{{- end -}}
{{- end -}}
{{- $count -}}
{{- end -}}

{{/*
Checks that need more than the JSON schema can say. Included once, from the DaemonSet.
*/}}
{{- define "ipamd.validate" -}}
{{- $db := .Values.database -}}
{{- if eq $db.type "sqlite" -}}
{{- if not $db.sqlite.force -}}
{{- $declared := int .Values.cluster.nodeCount -}}
{{- if gt $declared 1 -}}
{{- fail (printf "database.type=sqlite cannot serve cluster.nodeCount=%d nodes: SQLite is a file on each node, so every node would hand out the same addresses independently. Use database.type=postgresql with database.existingSecret (a Secret holding the PostgreSQL URL), or set database.sqlite.force=true if only one node ever attaches secondary networks." $declared) -}}
{{- end -}}
{{- $live := int (include "ipamd.liveNodeCount" .) -}}
{{- if gt $live 1 -}}
{{- fail (printf "database.type=sqlite cannot serve this cluster: %d nodes match nodeSelector, and SQLite is a file on each node, so every node would hand out the same addresses independently. Use database.type=postgresql with database.existingSecret (a Secret holding the PostgreSQL URL), or narrow nodeSelector to one node, or set database.sqlite.force=true." $live) -}}
{{- end -}}
{{- end -}}
{{- else if eq $db.type "postgresql" -}}
{{- if not $db.existingSecret -}}
{{- fail "database.type=postgresql needs database.existingSecret: the name of a Secret in the release namespace whose key database.secretKey (default \"url\") holds the URL, e.g. postgresql+asyncpg://ipamd:PASSWORD@ipamd-db-rw.db.svc:5432/ipamd" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true: the ServiceMonitor scrapes the metrics Service" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.ipam.subnets -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "ipam.subnets: the name %q is declared twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- $pools := dict -}}
{{- range .Values.ipam.pools -}}
{{- if hasKey $pools .name -}}
{{- fail (printf "ipam.pools: the name %q is declared twice" .name) -}}
{{- end -}}
{{- $_ := set $pools .name true -}}
{{- end -}}
{{- end -}}

{{/*
Container securityContext, shared by the init container and the daemon.
Root (uid 0) because both write to hostPath directories the kubelet creates owned by
root with mode 0755 (/run/ipamd, the CNI bin dir, /var/lib/ipamd); fsGroup does not
apply to hostPath volumes. Every capability is dropped: an owner needs none to write
in its own directory, rename files or chmod its socket.
*/}}
{{- define "ipamd.containerSecurityContext" -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/*
HTTP probe against the TCP listener. The kubelet shares the pod's (host) network
namespace, so 127.0.0.1 reaches the listener whether it is bound to loopback or to all
addresses. Call with (dict "path" "/healthz" "ctx" $).
*/}}
{{- define "ipamd.httpProbe" -}}
httpGet:
  host: 127.0.0.1
  path: {{ .path }}
  port: http
  scheme: HTTP
{{- end -}}
