// Command etcd is the upstream etcd server, at the version k8s.io/kubernetes
// requires, built from Go modules for end-to-end tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
