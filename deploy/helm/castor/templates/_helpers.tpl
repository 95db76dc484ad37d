{{/* The tag of the Castor images. */}}
{{- define "castor.tag" -}}
{{- default .Chart.AppVersion .Values.images.tag -}}
{{- end -}}

{{/* castor-control's gRPC address inside the cluster. */}}
{{- define "castor.controlAddress" -}}
castor-control.{{ .Values.namespace }}.svc:{{ .Values.control.grpcPort }}
{{- end -}}

{{/* Labels of an object of component $1 named $2: (list . "engine" "castor-engine"). */}}
{{- define "castor.labels" -}}
{{- $name := index . 2 -}}
{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ $name }}
{{- if $component }}
app.kubernetes.io/component: {{ $component }}
{{- end }}
app.kubernetes.io/part-of: castor
{{- end -}}

{{/* The etcd members' client URLs, host:port, comma-separated. */}}
{{- define "castor.etcdEndpoints" -}}
{{- $ns := .Values.namespace -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.control.etcd.replicas) -}}
{{- $eps = append $eps (printf "castor-etcd-%d.castor-etcd.%s.svc:2379" $i $ns) -}}
{{- end -}}
{{- join "," $eps -}}
{{- end -}}

{{/* etcd's --initial-cluster. */}}
{{- define "castor.etcdInitialCluster" -}}
{{- $ns := .Values.namespace -}}
{{- $m := list -}}
{{- range $i := until (int .Values.control.etcd.replicas) -}}
{{- $m = append $m (printf "castor-etcd-%d=http://castor-etcd-%d.castor-etcd.%s.svc:2380" $i $i $ns) -}}
{{- end -}}
{{- join "," $m -}}
{{- end -}}
