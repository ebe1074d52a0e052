package builder

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// refusedNoteEvery bounds how often refusals for too many unauthenticated
// connections are logged: a flood must not become a flood of log lines.
const refusedNoteEvery = 10 * time.Second

// preauth limits the connections that have not authenticated yet, as
// OpenSSH's LoginGraceTime and MaxStartups do: at most max at once (one
// more is closed as soon as it is accepted, before a byte of SSH), and each
// is closed once grace has passed since it was accepted without it having
// authenticated, however slowly it trickles bytes in.
//
// A connection stops counting once its client has proved it holds an
// accepted key (verified, below), or once gliderlabs/ssh has put it in its
// context (ContextKeyConn), which it does when the handshake, key exchange
// and authentication included, has succeeded.
type preauth struct {
	grace time.Duration // <= 0: none
	max   int           // <= 0: no limit
	log   *slog.Logger

	mu       sync.Mutex
	pending  map[*pendingConn]struct{}
	closed   bool
	refused  int // since lastNote
	lastNote time.Time
}

// accept is the server's ConnCallback: nil closes the connection.
func (p *preauth) accept(ctx gliderssh.Context, conn net.Conn) net.Conn {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	if p.max > 0 && len(p.pending) >= p.max {
		p.refused++
		refused, note := p.refused, time.Since(p.lastNote) >= refusedNoteEvery
		if note {
			p.refused, p.lastNote = 0, time.Now()
		}
		p.mu.Unlock()
		if note {
			p.log.Warn("too many unauthenticated ssh connections: closing new ones at once",
				"limit", p.max, "refused", refused, "remote", conn.RemoteAddr().String())
		}
		return nil
	}
	c := &pendingConn{Conn: conn, p: p, ctx: ctx}
	if p.pending == nil {
		p.pending = map[*pendingConn]struct{}{}
	}
	p.pending[c] = struct{}{}
	if p.grace > 0 {
		c.timer = time.AfterFunc(p.grace, c.graceOver)
	}
	p.mu.Unlock()
	ctx.SetValue(ctxPendingKey{}, c)
	return c
}

// close closes the connections not authenticated yet and refuses new ones:
// the server is shutting down (gliderlabs/ssh tracks only authenticated
// connections).
func (p *preauth) close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*pendingConn, 0, len(p.pending))
	for c := range p.pending {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type ctxPendingKey struct{}

// serverConfig is the server's ServerConfigCallback: its SSH configuration
// for one connection tells preauth as soon as the client has authenticated.
func (p *preauth) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		// Called once the client has signed with a key PublicKeyHandler
		// accepted, that is once it has authenticated (publickey is the
		// only method offered).
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, _ gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			if c, ok := ctx.Value(ctxPendingKey{}).(*pendingConn); ok {
				c.release()
			}
			return perms, nil
		},
	}
}

func (p *preauth) unauthenticated() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// pendingConn is an accepted connection, counted as unauthenticated until
// it authenticates or closes.
type pendingConn struct {
	net.Conn
	p     *preauth
	ctx   gliderssh.Context
	timer *time.Timer
	done  atomic.Bool // no longer counted
}

func (c *pendingConn) authenticated() bool {
	return c.ctx.Value(gliderssh.ContextKeyConn) != nil
}

// release stops counting c as unauthenticated, once.
func (c *pendingConn) release() {
	if c.done.CompareAndSwap(false, true) {
		c.p.mu.Lock()
		delete(c.p.pending, c)
		t := c.timer // set under the lock, maybe after the timer fired
		c.p.mu.Unlock()
		if t != nil {
			t.Stop()
		}
	}
}

// graceOver closes c unless it has authenticated meanwhile.
func (c *pendingConn) graceOver() {
	if c.done.Load() {
		return
	}
	if c.authenticated() {
		c.release()
		return
	}
	c.p.log.Info("closing an ssh connection that did not authenticate in time",
		"remote", c.RemoteAddr().String(), "grace", c.p.grace)
	c.Close()
}

func (c *pendingConn) Close() error {
	c.release()
	return c.Conn.Close()
}
