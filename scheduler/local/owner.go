package local

import (
	"fmt"
	"net"
	"time"

	"github.com/pierpaas/pier/internal/pgroup"
)

// portHolder is who listens on a process's port (see checkPort).
type portHolder struct {
	own      bool // only sockets of the process's group, made by its uid
	stranger bool // someone else listens there
	uid      int  // the stranger's uid
}

// listens says whether p's own group listens on its port and accepts there,
// or, when someone else does, why p is not up. Only a listener of the
// group counts: the port was free while p was not listening (before it
// bound it, during a restart's backoff), and a neighbour may hold it now.
// /proc/net/tcp is read only once something accepts: it costs about a
// millisecond (the kernel walks its whole hash table).
func (s *Scheduler) listens(p *proc, g *pgroup.Group, uid int) (ready bool, why string) {
	conn, err := net.DialTimeout("tcp", p.addr, time.Second)
	if err != nil {
		return false, ""
	}
	conn.Close()
	h, err := checkPort(p.port, g, uid)
	switch {
	case err != nil:
		return false, fmt.Sprintf("cannot tell who listens on port %d: %v; %s is not routed until it can", p.port, err, p.name())
	case h.stranger:
		return false, fmt.Sprintf("port %d is held by another process (uid %d): %s is not routed while it is; it comes up once its own process listens there", p.port, h.uid, p.name())
	}
	return h.own, "" // neither: the listener went meanwhile
}
