// Command pause is the pod sandbox's one process: it holds the pod's namespaces
// and reaps nothing but itself. No registry is reachable here, so the test
// cluster builds its sandbox image from this instead of pulling registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
}
