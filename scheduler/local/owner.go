package local

import (
	"fmt"
	"net"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/pgroup"
)

// portHolder is who listens on a process's port (see checkPort).
type portHolder struct {
	own      bool     // only sockets of the process's group, made by its uid
	stranger bool     // someone else listens there
	uid      int      // the stranger's uid
	sockets  []uint64 // own: the inodes of the listening sockets
}

// listens returns the sockets by which p's own group listens on its port
// and accepts there, or nil and, when someone else does, why p is not up.
// Only a listener of the group counts: the port was free while p was not
// listening (before it bound it, during a restart's backoff), and a
// neighbour may hold it now. /proc/net/tcp is read only once something
// accepts: it costs about a millisecond (the kernel walks its whole hash
// table).
func (s *Scheduler) listens(p *proc, g *pgroup.Group, uid int) (sockets []uint64, why string) {
	conn, err := net.DialTimeout("tcp", p.addr, time.Second)
	if err != nil {
		return nil, ""
	}
	conn.Close()
	h, err := checkPort(p.port, g, uid)
	switch {
	case err != nil:
		return nil, fmt.Sprintf("cannot tell who listens on port %d: %v; %s is not routed until it can", p.port, err, p.name())
	case h.stranger:
		return nil, fmt.Sprintf("port %d is held by another process (uid %d): %s is not routed while it is; it comes up once its own process listens there", p.port, h.uid, p.name())
	}
	return h.sockets, "" // nil: the listener went meanwhile
}

// watchEvery is how often an up web process's group is checked to still
// hold its listening sockets: reading its fds costs microseconds.
const watchEvery = time.Second

// watchListener returns true once p's group no longer holds all of
// sockets (it closed its listener, and the port is anyone's), false when p
// exits.
func (s *Scheduler) watchListener(p *proc, g *pgroup.Group, sockets []uint64, runDone chan struct{}) bool {
	if len(sockets) == 0 {
		<-runDone // nothing to watch (outside Linux)
		return false
	}
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-runDone:
			return false
		case <-t.C:
		}
		if !groupHolds(g, sockets) {
			p.app.platform("%s closed its listener on port %d: it is not routed until it listens there again", p.name(), p.port)
			return true
		}
	}
}

// unready takes p out of the routes while it does not listen.
func (s *Scheduler) unready(p *proc) {
	s.mu.Lock()
	if p.state == pier.ProcessStopping {
		s.mu.Unlock()
		return
	}
	serving := p.ready && p.routed
	p.ready = false
	p.state = pier.ProcessStarting
	s.mu.Unlock()
	if serving {
		s.notify()
	}
}
