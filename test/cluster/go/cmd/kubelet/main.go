// Command kubelet is the upstream Kubernetes node agent, built from the same
// Go modules as the test API server, for the test cluster's one node.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	command := app.NewKubeletCommand(context.Background())
	os.Exit(cli.Run(command))
}
