// A KServe manager for the tests: KServe's own InferenceService controller, its pod mutator
// (the storage initializer injector) and its InferenceService defaulter and validator, from
// github.com/kserve/kserve at a pinned release, in a manager of our own. KServe's cmd/manager
// is a main package (it cannot be imported) and also starts the TrainedModel and
// InferenceGraph controllers, which the tests do not need. Flags as KServe's manager has them.
package main

import (
	"context"
	"flag"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	isvc "github.com/kserve/kserve/pkg/controller/v1beta1/inferenceservice"
	kservescheme "github.com/kserve/kserve/pkg/scheme"
	"github.com/kserve/kserve/pkg/webhook/admission/pod"
)

func must(err error, what string) {
	if err != nil {
		ctrl.Log.Error(err, what)
		os.Exit(1)
	}
}

func main() {
	metricsAddr := flag.String("metrics-addr", "0", "metrics address (0: off)")
	probeAddr := flag.String("health-probe-addr", "127.0.0.1:0", "health probe address")
	webhookPort := flag.Int("webhook-port", 9443, "webhook port (on 127.0.0.1)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	cfg, err := config.GetConfig()
	must(err, "client config")
	clientSet, err := kubernetes.NewForConfig(cfg)
	must(err, "clientset")
	cacheOpts, err := isvc.NewCacheOptions()
	must(err, "cache options")
	mgr, err := manager.New(cfg, manager.Options{
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		WebhookServer:          webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: *webhookPort}),
		HealthProbeBindAddress: *probeAddr,
		Cache:                  cacheOpts,
	})
	must(err, "manager")
	must(kservescheme.AddAll(mgr.GetScheme()), "schemes")

	configMap, err := v1beta1.GetInferenceServiceConfigMap(context.Background(), clientSet)
	must(err, "ConfigMap inferenceservice-config")
	deployConfig, err := v1beta1.NewDeployConfig(configMap)
	must(err, "deploy config")
	ingressConfig, err := v1beta1.NewIngressConfig(configMap)
	must(err, "ingress config")
	_, err = v1beta1.NewMultiNodeConfig(configMap)
	must(err, "multi-node config")

	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientSet.CoreV1().Events("")})
	must((&isvc.InferenceServiceReconciler{
		Client:    mgr.GetClient(),
		Clientset: clientSet,
		Log:       ctrl.Log.WithName("InferenceService"),
		Scheme:    mgr.GetScheme(),
		Recorder:  events.NewRecorder(mgr.GetScheme(), corev1.EventSource{Component: "v1beta1Controllers"}),
	}).SetupWithManager(mgr, deployConfig, ingressConfig), "InferenceService controller")

	mgr.GetWebhookServer().Register("/mutate-pods", &webhook.Admission{
		Handler: &pod.Mutator{Client: mgr.GetClient(), Clientset: clientSet, Decoder: admission.NewDecoder(mgr.GetScheme())},
	})
	must(ctrl.NewWebhookManagedBy(mgr).
		For(&v1beta1.InferenceService{}).
		WithDefaulter(&v1beta1.InferenceServiceDefaulter{}).
		WithValidator(&v1beta1.InferenceServiceValidator{}).
		Complete(), "InferenceService webhooks")
	must(mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()), "ready check")
	must(mgr.Start(signals.SetupSignalHandler()), "manager")
}
