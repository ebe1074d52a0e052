package docker

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// ports hands out loopback ports from the configured range and remembers
// which ones containers hold, because a port that is free now (its
// container still booting) is not free for the next container.
type ports struct {
	mu     sync.Mutex
	lo, hi int
	next   int
	used   map[int]bool
}

func newPorts(r [2]int) *ports {
	return &ports{lo: r[0], hi: r[1], next: r[0], used: map[int]bool{}}
}

// get returns a port nobody listens on now. Someone else may still take it
// before the container binds it; the readiness check would then see the
// intruder, which is why Pier is given a range of its own.
func (p *ports) get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.hi - p.lo + 1 {
		port := p.next
		p.next++
		if p.next > p.hi {
			p.next = p.lo
		}
		if p.used[port] || !free(port) {
			continue
		}
		p.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d: every one is in use; give the scheduler a larger port range", p.lo, p.hi)
}

// take marks a port held by a container found at start.
func (p *ports) take(port int) {
	p.mu.Lock()
	p.used[port] = true
	p.mu.Unlock()
}

func (p *ports) put(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

// free says whether port can be bound on loopback: with host networking the
// containers share this network namespace, so a bound port shows here.
func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
