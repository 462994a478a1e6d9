// kubectl for the operator image, built from the k8s.io/kubectl module as k8s.io/kubernetes/cmd/kubectl
// builds it: Herd renders Kustomize sources with `kubectl kustomize` (no cluster access).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		os.Exit(1)
	}
}
