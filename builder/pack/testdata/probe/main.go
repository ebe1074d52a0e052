// Command probe is what a hostile Dockerfile's RUN step does in
// TestBuildCannotReachHostLoopback: it lists the network interfaces it
// sees and tries a TCP connection to its argument, printing what happened,
// and exits 0 either way so that the build goes on.
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		fmt.Println("probe: interface", i.Name)
	}
	c, err := net.DialTimeout("tcp", os.Args[1], 3*time.Second)
	if err != nil {
		fmt.Println("probe: cannot connect:", err)
		return
	}
	c.Close()
	fmt.Println("probe: connected to", os.Args[1])
}
