//go:build !linux

package sandbox

import (
	"fmt"
	"os"
)

// Main runs the sandbox when this process is one; outside Linux there are
// no sandboxes (Available says so), so it only refuses.
func Main() {
	if len(os.Args) < 2 || os.Args[1] != arg {
		return
	}
	fmt.Fprintln(os.Stderr, "pier sandbox: needs Linux namespaces")
	os.Exit(126)
}
