package local

import (
	"fmt"
	"os"

	"github.com/pierpaas/pier/scheduler/local/firewall"
)

// DefaultAppUIDs is the uid range of apps when Config.AppUIDs is zero:
// pierd's default --app-uids, 65,536 uids above those distributions hand
// out to people and services.
var DefaultAppUIDs = [2]uint32{100000, 165535}

// guardLoopback, as root, refuses the app uids' new TCP connections over
// loopback except to the allowed ports (the router's): every app listens
// on loopback, and a port is no secret. Without root there are no per-app
// uids to tell apart, and no netfilter to ask.
func (s *Scheduler) guardLoopback() error {
	if os.Geteuid() != 0 {
		return nil
	}
	g, err := firewall.Install(firewall.Config{
		DataDir: s.cfg.DataDir, UIDs: s.cfg.AppUIDs, Allow: s.cfg.AllowedPorts,
		Logger: s.log.With("component", "scheduler"),
	})
	if err != nil {
		return fmt.Errorf("local scheduler: %w", err)
	}
	s.guard = g
	s.log.Info("app uids may open loopback TCP connections to the router's ports only", "chain", firewall.Chain(s.cfg.DataDir), "app_uids", fmt.Sprintf("%d-%d", s.cfg.AppUIDs[0], s.cfg.AppUIDs[1]), "ports", s.cfg.AllowedPorts)
	return nil
}

// unguard removes the rules once no app process is left.
func (s *Scheduler) unguard() error {
	if s.guard == nil {
		return nil
	}
	if err := s.guard.Remove(); err != nil {
		return fmt.Errorf("local scheduler: removing its firewall rules: %w", err)
	}
	return nil
}
