package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pierpaas/pier"
)

var _ pier.StoreHealth = (*DB)(nil)

// monitorInterval is how often the monitor pings the database. A second
// keeps DownSince and the end of an outage within a second of the truth for
// the price of one tiny query a second.
const monitorInterval = time.Second

// monitor pings the database every monitorInterval (or at once when an
// API call has just seen a lost connection) and keeps DownSince. When the
// database answers again after an outage it drops every pooled connection,
// which may belong to the dead server, and calls the OnReconnect hooks.
type monitor struct {
	downSince atomic.Int64  // unix nanoseconds; 0: up
	wake      chan struct{} // an outage was just seen: ping now
	stop      context.CancelFunc
	done      chan struct{}

	mu    sync.Mutex
	hooks []func()
}

// startMonitor starts db's monitor; Close stops it.
func (db *DB) startMonitor() {
	ctx, cancel := context.WithCancel(context.Background())
	db.mon = &monitor{wake: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go db.watchHealth(ctx)
}

func (db *DB) watchHealth(ctx context.Context) {
	m := db.mon
	defer close(m.done)
	t := time.NewTicker(monitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.pool.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.downSince.CompareAndSwap(0, time.Now().UnixNano())
			continue
		}
		if m.downSince.Swap(0) != 0 {
			// Connections made before the outage may be to a server
			// that is gone; those in use are closed when released.
			db.pool.Reset()
			m.mu.Lock()
			hooks := append([]func(){}, m.hooks...)
			m.mu.Unlock()
			for _, fn := range hooks {
				go fn()
			}
		}
	}
}

// OnReconnect adds fn to what runs (in a goroutine of its own) each time
// the database answers again after the monitor found it down, such as
// converging every app once more.
func (db *DB) OnReconnect(fn func()) {
	db.mon.mu.Lock()
	defer db.mon.mu.Unlock()
	db.mon.hooks = append(db.mon.hooks, fn)
}

// DownSince is when the monitor first found the database not answering,
// while it still does not; zero while it answers.
func (db *DB) DownSince() time.Time {
	if n := db.mon.downSince.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Outage reports whether err, from one of the store's methods, comes from
// the database not answering rather than from a bug or bad input. A
// domain error (*pier.Error) never is one. A lost connection counts as
// the start of an outage, until the monitor's next ping answers.
func (db *DB) Outage(err error) bool {
	if err == nil {
		return false
	}
	var pe *pier.Error
	if errors.As(err, &pe) {
		return false
	}
	if isConnectionLoss(err) {
		// The outage began, whether or not the monitor's ping has seen
		// it: its end then runs the OnReconnect hooks, which converge
		// again what failed half-way. Ping now rather than within the
		// second, so that the end is known soon.
		db.mon.downSince.CompareAndSwap(0, time.Now().UnixNano())
		select {
		case db.mon.wake <- struct{}{}:
		default:
		}
		return true
	}
	// While the monitor finds the database down, whatever else failed
	// (a timeout waiting for a connection, a context cut short) failed
	// for that reason.
	return !db.DownSince().IsZero()
}

// isConnectionLoss reports whether err says the server could not be
// reached or went away: a failed connect, a SQLSTATE of class 08
// (connection exception) or 57P01-57P03 (the server shutting down, crashed
// or starting up), or the connection breaking under a query.
func isConnectionLoss(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		switch {
		case strings.HasPrefix(pge.Code, "08"),
			pge.Code == "57P01", // admin_shutdown
			pge.Code == "57P02", // crash_shutdown
			pge.Code == "57P03": // cannot_connect_now: starting up, recovering
			return true
		}
		return false
	}
	return errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ENOENT)
}

// Check asks the database now whether it answers and its schema is at the
// latest migration this build of Pier knows.
func (db *DB) Check(ctx context.Context) error {
	v, err := schemaVersion(ctx, db.pool) // dump.go
	if err != nil {
		return err
	}
	want, err := latestMigration()
	if err != nil {
		return err
	}
	if v < want {
		return fmt.Errorf("schema version %d, want %d: %w", v, want, pier.ErrSchemaBehind)
	}
	return nil
}
