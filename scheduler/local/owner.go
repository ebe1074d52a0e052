package local

import "os"

// portHolder is who listens on a process's port (see checkPort).
type portHolder struct {
	own      bool // only sockets of the process's group, made by its uid
	stranger bool // someone else listens there
	uid      int  // the stranger's uid
}

// appUID is the uid an app's sockets are made by: its credential's, or
// pierd's own when processes run as pierd.
func (s *Scheduler) appUID(app string) int {
	if c := s.cfg.Credential(app); c != nil {
		return int(c.Uid)
	}
	return os.Geteuid()
}
