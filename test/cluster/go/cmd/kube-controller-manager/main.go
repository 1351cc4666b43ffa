// Command kube-controller-manager is the upstream controller manager (ClusterRole
// aggregation, Deployments, ServiceAccounts, ...), built from Go modules for tests.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	os.Exit(cli.Run(command))
}
