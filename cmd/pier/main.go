// Command pier is Pier's command line. Everything lives in package cli, so
// that tests run the same commands in-process.
package main

import (
	"os"

	"github.com/pierpaas/pier/cli"
)

func main() { os.Exit(cli.Main()) }
