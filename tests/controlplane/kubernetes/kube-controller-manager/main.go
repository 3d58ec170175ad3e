// Command kube-controller-manager is the upstream controller manager (Deployments, ReplicaSets,
// StatefulSets, Jobs, CronJobs...), built from the same pinned release as kube-apiserver: the
// tests judge pods as the built-in controllers make them.
package main

import (
	"os"

	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
