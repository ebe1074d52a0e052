// Command pier-buildpack is every one of Pier's buildpacks (see package
// buildpacks): installed as their bin/detect and bin/build, it chooses the
// buildpack and phase from CNB_BUILDPACK_DIR and its argv[0].
package main

import (
	"os"

	"github.com/pierpaas/pier/buildpacks"
)

func main() { os.Exit(buildpacks.Main(os.Args)) }
