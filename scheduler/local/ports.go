package local

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// ports hands out loopback ports for processes and remembers which ones it
// gave, because the kernel happily returns a just-closed port again.
type ports struct {
	mu     sync.Mutex
	lo, hi int // a fixed range, or 0, 0 for any free port
	next   int
	used   map[int]bool
}

func newPorts(r [2]int) *ports {
	return &ports{lo: r[0], hi: r[1], next: r[0], used: map[int]bool{}}
}

// get returns a port that is free now. It can still be taken by someone
// else before the process binds it; the readiness check would then see the
// intruder, which is why an operator can give Pier a range of its own.
func (p *ports) get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lo == 0 {
		for range 100 {
			port, err := probePort(0)
			if err != nil {
				return 0, err
			}
			if !p.used[port] {
				p.used[port] = true
				return port, nil
			}
		}
		return 0, fmt.Errorf("no free loopback port found")
	}
	n := p.hi - p.lo + 1
	for range n {
		port := p.next
		p.next++
		if p.next > p.hi {
			p.next = p.lo
		}
		if p.used[port] {
			continue
		}
		if _, err := probePort(port); err == nil {
			p.used[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d: every one is in use", p.lo, p.hi)
}

func (p *ports) put(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

func probePort(port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
