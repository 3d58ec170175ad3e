{{- /* The one image name, as values.yaml says. */ -}}
{{- define "mlflow-webhook.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- /* The Deployment: image (and the model init container's, MLFLOW_WEBHOOK_IMAGE), replicas,
resources and scheduling. */ -}}
{{- define "mlflow-webhook.deployment" -}}
{{- $v := .Values -}}
{{- $_ := set .obj.spec "replicas" $v.replicas -}}
{{- $pod := .obj.spec.template.spec -}}
{{- /* New pods when the configuration changes: the webhook reads it when it starts. */ -}}
{{- $_ := set .obj.spec.template.metadata "annotations" (dict "checksum/config" (toYaml $v.config | sha256sum)) -}}
{{- $container := index $pod.containers 0 -}}
{{- $_ := set $container "image" .image -}}
{{- $_ := set $container "imagePullPolicy" $v.image.pullPolicy -}}
{{- $_ := set $container "resources" $v.resources -}}
{{- range $env := $container.env -}}
{{- if eq $env.name "MLFLOW_WEBHOOK_IMAGE" -}}
{{- $_ := set $env "value" $.image -}}
{{- end -}}
{{- end -}}
{{- with $v.imagePullSecrets }}{{ $_ := set $pod "imagePullSecrets" . }}{{ end -}}
{{- with $v.nodeSelector }}{{ $_ := set $pod "nodeSelector" . }}{{ end -}}
{{- with $v.tolerations }}{{ $_ := set $pod "tolerations" . }}{{ end -}}
{{- with $v.affinity }}{{ $_ := set $pod "affinity" . }}{{ end -}}
{{- with $v.priorityClassName }}{{ $_ := set $pod "priorityClassName" . }}{{ end -}}
{{- end -}}

{{- /* Both webhook configurations: the Service in the release's namespace, that namespace never
sent to itself, the namespaces served, and cert-manager's CA injection. The matchConditions a
running webhook brought in line with its configuration (webhook/routing.py) are kept as they are
in the cluster: the defaults are only the first install's, and helm, which applies server-side,
then never contends with the webhook for them. */ -}}
{{- define "mlflow-webhook.webhooks" -}}
{{- $ns := .ns -}}
{{- $live := dict -}}
{{- with lookup "admissionregistration.k8s.io/v1" .obj.kind "" .obj.metadata.name -}}
{{- range $hook := .webhooks -}}
{{- $_ := set $live $hook.name $hook -}}
{{- end -}}
{{- end -}}
{{- range $hook := .obj.webhooks -}}
{{- $found := get $live $hook.name -}}
{{- if $found -}}
{{- with $found.matchConditions -}}
{{- $_ := set $hook "matchConditions" . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $hook.clientConfig.service "namespace" $ns -}}
{{- with $hook.namespaceSelector -}}
{{- range $expression := .matchExpressions -}}
{{- if eq $expression.key "kubernetes.io/metadata.name" -}}
{{- $_ := set $expression "values" (list "kube-system" $ns) -}}
{{- end -}}
{{- end -}}
{{- if $.Values.injectNamespaces -}}
{{- $names := dict "key" "kubernetes.io/metadata.name" "operator" "In" "values" $.Values.injectNamespaces -}}
{{- $kept := list -}}
{{- range $expression := .matchExpressions -}}
{{- if ne $expression.key "mlflow.primehub.io/injection" }}{{ $kept = append $kept $expression }}{{ end -}}
{{- end -}}
{{- $_ := set . "matchExpressions" (prepend $kept $names) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.certificates "cert-manager" -}}
{{- $_ := set .obj.metadata "annotations" (dict "cert-manager.io/inject-ca-from" (printf "%s/mlflow-webhook" $ns)) -}}
{{- end -}}
{{- end -}}

{{- /* The self-managed certificate keeper (its Job and CronJob): image and namespace. */ -}}
{{- define "mlflow-webhook.certsJob" -}}
{{- $template := .obj.spec.template -}}
{{- if eq .obj.kind "CronJob" -}}
{{- $template = .obj.spec.jobTemplate.spec.template -}}
{{- end -}}
{{- $pod := $template.spec -}}
{{- range $container := $pod.containers -}}
{{- $_ := set $container "image" $.image -}}
{{- $args := list -}}
{{- range $arg := $container.args -}}
{{- $args = append $args (ternary (printf "--namespace=%s" $.ns) $arg (eq $arg "--namespace=mlflow-webhook")) -}}
{{- end -}}
{{- $_ := set $container "args" $args -}}
{{- end -}}
{{- end -}}

{{- /* The network policy's placeholder CIDR, as components/network-policy asks to patch it. */ -}}
{{- define "mlflow-webhook.networkPolicy" -}}
{{- $cidr := required "networkPolicy.apiServerCIDR: where your API servers are (the policy admits only them)" .cidr -}}
{{- $first := index .obj.spec.ingress 0 -}}
{{- $_ := set (index $first.from 0).ipBlock "cidr" $cidr -}}
{{- $out := index .obj.spec.egress 0 -}}
{{- $_ := set (index $out.to 0).ipBlock "cidr" $cidr -}}
{{- end -}}
