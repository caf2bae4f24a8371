{{- define "ch-edge-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ch-edge-proxy.fullname" -}}
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

{{- define "ch-edge-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ch-edge-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ch-edge-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ch-edge-proxy.labels" -}}
helm.sh/chart: {{ include "ch-edge-proxy.chart" . }}
{{ include "ch-edge-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ch-edge-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ch-edge-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ch-edge-proxy.routesConfigMapName" -}}
{{- if .Values.existingRoutesConfigMap }}
{{- .Values.existingRoutesConfigMap }}
{{- else }}
{{- printf "%s-routes" (include "ch-edge-proxy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Directories inside the pod; the proxy's config and include paths point here. */}}
{{- define "ch-edge-proxy.configDir" -}}/etc/ch-edge-proxy/config{{- end }}
{{- define "ch-edge-proxy.routesDir" -}}/etc/ch-edge-proxy/routes.d{{- end }}
{{/* TLS Secrets (tls.secrets) are mounted at <tlsDir>/<secret name>/; the upstream CA at upstreamCADir. */}}
{{- define "ch-edge-proxy.tlsDir" -}}/etc/ch-edge-proxy/tls{{- end }}
{{- define "ch-edge-proxy.upstreamCADir" -}}/etc/ch-edge-proxy/upstream-ca{{- end }}

{{/* Where /routes listens: ip:port, IPv6 in brackets. */}}
{{- define "ch-edge-proxy.routesAddress" -}}
{{- $r := .Values.admin.routes }}
{{- if eq (int $r.port) (int .Values.admin.port) }}
{{- fail "admin.routes.port must differ from admin.port" }}
{{- end }}
{{- if contains ":" $r.address }}[{{ $r.address }}]:{{ int $r.port }}{{ else }}{{ $r.address }}:{{ int $r.port }}{{ end }}
{{- end }}

{{/* Whether /routes is served beyond the pod's loopback (then it is a container port and in the NetworkPolicy). */}}
{{- define "ch-edge-proxy.routesExposed" -}}
{{- if and .Values.admin.routes.enabled (not (has .Values.admin.routes.address (list "127.0.0.1" "::1"))) }}true{{- end }}
{{- end }}

{{/* Any port below 1024 needs NET_BIND_SERVICE. */}}
{{- define "ch-edge-proxy.needsBindCap" -}}
{{- $low := false }}
{{- range .Values.listeners }}{{- if lt (int .port) 1024 }}{{- $low = true }}{{- end }}{{- end }}
{{- if lt (int .Values.admin.port) 1024 }}{{- $low = true }}{{- end }}
{{- if and .Values.admin.routes.enabled (lt (int .Values.admin.routes.port) 1024) }}{{- $low = true }}{{- end }}
{{- if $low }}true{{- end }}
{{- end }}

{{- define "ch-edge-proxy.terminationGracePeriodSeconds" -}}
{{- $min := add (int .Values.preStopSleepSeconds) (int .Values.timeouts.drainSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $min 5 }}
{{- else if lt (int .Values.terminationGracePeriodSeconds) (int $min) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + timeouts.drainSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int $min)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The proxy's configuration file (DESIGN.md contract). */}}
{{- define "ch-edge-proxy.config" -}}
{{- $listeners := list }}
{{- range .Values.listeners }}
{{- $pp := default $.Values.proxyProtocol .proxyProtocol }}
{{- $ppOut := dict "mode" (toString $pp.mode) }}
{{- if ne (toString $pp.mode) "off" }}{{- $_ := set $ppOut "trusted" $pp.trusted }}{{- end }}
{{- $l := dict "name" .name "address" (printf "0.0.0.0:%d" (int .port)) "proxy_protocol" $ppOut }}
{{- if .upstreamPort }}{{- $_ := set $l "upstream_port" (int .upstreamPort) }}{{- end }}
{{- if .upstreamPortPlain }}{{- $_ := set $l "upstream_port_plain" (int .upstreamPortPlain) }}{{- end }}
{{- if .protocol }}{{- $_ := set $l "protocol" (toString .protocol) }}{{- end }}
{{- $listeners = append $listeners $l }}
{{- end }}
{{- $cfg := dict "listeners" $listeners }}
{{- $admin := list (dict "address" (printf "0.0.0.0:%d" (int .Values.admin.port)) "serve" (list "probes" "metrics")) }}
{{- if .Values.admin.routes.enabled }}
{{- $admin = append $admin (dict "address" (include "ch-edge-proxy.routesAddress" .) "serve" (list "routes")) }}
{{- end }}
{{- $_ := set $cfg "admin" (dict "listeners" $admin) }}
{{- $_ := set $cfg "timeouts" (dict "client_hello" .Values.timeouts.clientHello "connect" .Values.timeouts.connect "idle" .Values.timeouts.idle "drain" (printf "%ds" (int .Values.timeouts.drainSeconds))) }}
{{- $limits := dict "max_connections" (int .Values.limits.maxConnections) }}
{{- with .Values.limits.perClient }}
{{- $pc := dict }}
{{- if .maxConnections }}{{- $_ := set $pc "max_connections" (int .maxConnections) }}{{- end }}
{{- if .rate }}{{- $_ := set $pc "rate" .rate }}{{- end }}
{{- if .burst }}{{- $_ := set $pc "burst" .burst }}{{- end }}
{{- $_ := set $limits "per_client" $pc }}
{{- end }}
{{- $_ := set $cfg "limits" $limits }}
{{- $_ := set $cfg "defaults" (dict "allow" .Values.defaults.allow "proxy_protocol" (toString .Values.defaults.proxyProtocol) "balance" (default "least_conn" .Values.defaults.balance) "sticky" (ne (toString .Values.defaults.sticky) "false")) }}
{{- $tls := default (dict) .Values.tls }}
{{- $_ := set $cfg.defaults "tls" (default "passthrough" .Values.defaults.tls) }}
{{- $ca := default (dict) $tls.upstreamCA }}
{{- if $ca.secretName }}
{{- $_ := set $cfg.defaults "upstream_tls" (dict "ca" (printf "%s/%s" (include "ch-edge-proxy.upstreamCADir" .) (default "ca.crt" $ca.key))) }}
{{- end }}
{{- $certs := list }}
{{- range (default (list) $tls.secrets) }}
{{- $dir := printf "%s/%s" (include "ch-edge-proxy.tlsDir" $) . }}
{{- $certs = append $certs (dict "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir)) }}
{{- end }}
{{- $_ := set $cfg "tls" (dict "certificates" $certs "min_version" (toString (default "1.2" $tls.minVersion)) "max_handshakes" (int (default 1024 $tls.maxHandshakes))) }}
{{- $h := default (dict) .Values.health }}
{{- $_ := set $cfg "health" (dict "eject_after" (int (default 1 $h.ejectAfter)) "eject_for" (default "5s" $h.ejectFor)) }}
{{- $log := dict "format" (default "json" .Values.log.format) "sample" .Values.log.sample "level" .Values.log.level }}
{{- with .Values.log.access }}{{ $_ := set $log "access" . }}{{ end }}
{{- $_ := set $cfg "log" $log }}
{{- $_ := set $cfg "routes" list }}
{{- $_ := set $cfg "include" (list (include "ch-edge-proxy.routesDir" .)) }}
{{- $k := .Values.discovery.kubernetes }}
{{- $kube := dict "enabled" $k.enabled "domain" $k.domain "namespaces" $k.namespaces "label_selector" $k.labelSelector "sources" (default (list "chi") $k.sources) }}
{{- $g := default (dict) $k.gatewayApi }}
{{- if $g.enabled }}
{{- $_ := set $kube "gateway_api" (dict "enabled" true "controller_name" $g.controllerName "cluster_domain" $g.clusterDomain) }}
{{- end }}
{{- $_ := set $cfg "discovery" (dict "kubernetes" $kube) }}
{{- toYaml $cfg }}
{{- end }}

{{/* The Service's annotations: the NLB's (service.nlb) with `annotations` and
`extraAnnotations` over them. */}}
{{- define "ch-edge-proxy.serviceAnnotations" -}}
{{- $ann := dict }}
{{- $nlb := .Values.service.nlb | default dict }}
{{- if and (eq .Values.service.type "LoadBalancer") $nlb.enabled }}
{{- $p := "service.beta.kubernetes.io/aws-load-balancer-" }}
{{- $_ := set $ann (print $p "type") "external" }}
{{- $_ := set $ann (print $p "nlb-target-type") $nlb.targetType }}
{{- $_ := set $ann (print $p "scheme") $nlb.scheme }}
{{- $_ := set $ann (print $p "target-group-attributes") (printf "preserve_client_ip.enabled=%t" $nlb.preserveClientIp) }}
{{- if $nlb.proxyProtocolV2 }}{{- $_ := set $ann (print $p "proxy-protocol") "*" }}{{- end }}
{{- end }}
{{- $ann = merge (dict) .Values.service.extraAnnotations .Values.service.annotations $ann }}
{{- include "ch-edge-proxy.checkNlb" (dict "ann" $ann "Values" .Values) }}
{{- with $ann }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* What an AWS NLB with these annotations delivers to the pods, checked against the listeners'
PROXY protocol: a combination that would refuse every client fails the render (README "Behind
an AWS NLB"). Defaults as AWS documents them: client IP preservation is on for instance
targets, off for IP targets (TCP). */}}
{{- define "ch-edge-proxy.checkNlb" -}}
{{- $ann := .ann }}
{{- $p := "service.beta.kubernetes.io/aws-load-balancer-" }}
{{- $type := toString (index $ann (print $p "type") | default "") }}
{{- if and (eq .Values.service.type "LoadBalancer") (has $type (list "external" "nlb" "nlb-ip")) }}
{{- $target := toString (index $ann (print $p "nlb-target-type") | default (ternary "ip" "instance" (eq $type "nlb-ip"))) }}
{{- $attrs := splitList "," (toString (index $ann (print $p "target-group-attributes") | default "") | nospace) }}
{{- $preserve := eq $target "instance" }}
{{- if has "preserve_client_ip.enabled=true" $attrs }}{{ $preserve = true }}{{ end }}
{{- if has "preserve_client_ip.enabled=false" $attrs }}{{ $preserve = false }}{{ end }}
{{- $pp2 := or (eq (toString (index $ann (print $p "proxy-protocol") | default "")) "*") (has "proxy_protocol_v2.enabled=true" $attrs) }}
{{- range .Values.listeners }}
{{- $mode := toString (default $.Values.proxyProtocol .proxyProtocol).mode }}
{{- if and $preserve (ne $mode "off") }}
{{- fail (printf "listener %s: the NLB preserves client IPs (%s targets, preserve_client_ip.enabled=true), so its PROXY headers would come from the clients' own addresses, outside proxyProtocol.trusted, and every connection would be refused (proxy_untrusted). Use service.nlb.targetType=ip with preserveClientIp=false, or PROXY protocol off on both sides (README \"Behind an AWS NLB\")" .name $target) }}
{{- end }}
{{- if and (eq $mode "required") (not $pp2) }}
{{- fail (printf "listener %s: proxyProtocol.mode is required but the NLB sends no PROXY header (service.nlb.proxyProtocolV2=false): every connection would be refused (proxy_missing)" .name) }}
{{- end }}
{{- if and $pp2 (eq $mode "off") }}
{{- fail (printf "listener %s: the NLB sends PROXY v2 headers but proxyProtocol.mode is off: every connection would be refused (not_tls). Set the mode to required, or service.nlb.proxyProtocolV2=false" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
