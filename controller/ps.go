package controller

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/pierpaas/pier"
)

// running returns the Reconciler, which the process endpoints need: a
// controller started alone (`pierd controller`) records desired state
// but runs nothing, so it has no processes to show, restart or run.
func (s *Server) running() (*Reconciler, error) {
	if s.rec == nil {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "this controller runs no scheduler, so it has no processes, logs or one-off runs: run `pierd all`")
	}
	return s.rec, nil
}

func (s *Server) processes(w http.ResponseWriter, r *http.Request) (any, error) {
	rec, err := s.running()
	if err != nil {
		return nil, err
	}
	ps, err := rec.Processes(r.Context(), appOf(r).Name)
	return list(ps, ""), err
}

type restartRequest struct {
	Type string `json:"type,omitempty"` // "" or absent: every type
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) (any, error) {
	rec, err := s.running()
	if err != nil {
		return nil, err
	}
	var req restartRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
	}
	if req.Type != "" {
		if err := pier.ValidateProcessType(req.Type); err != nil {
			return nil, err
		}
	}
	app := appOf(r).Name
	if err := rec.Restart(r.Context(), app, req.Type); err != nil {
		return nil, err
	}
	what := req.Type
	if what == "" {
		what = "all"
	}
	s.event(context.WithoutCancel(r.Context()), pier.Event{App: app, Actor: userOf(r).Username, Action: "ps.restart", Detail: what})
	return nil, nil
}

// logsQuery are the parameters of GET /v1/apps/{app}/logs.
type logsQuery struct {
	Lines  *int   `query:"lines" doc:"how many of the last lines: 1 to 10000 (default 100)"`
	Type   string `query:"type" doc:"only the lines of this process type, such as web"`
	Follow bool   `query:"follow" doc:"after the last lines, keep streaming new ones until the client goes away"`
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) (any, error) {
	rec, err := s.running()
	if err != nil {
		return nil, err
	}
	var q logsQuery
	if err := decodeQuery(r, &q); err != nil {
		return nil, err
	}
	opts := pier.LogOptions{Lines: pier.LogLinesDefault, Type: q.Type, Follow: q.Follow}
	if q.Lines != nil {
		if *q.Lines < 1 {
			return nil, pier.Errorf(pier.EINVALID, "cannot show %d log lines: ask for 1 to %d", *q.Lines, pier.LogLinesMax)
		}
		opts.Lines = *q.Lines
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	st := newStream(w, r, s.log)
	err = rec.Logs(r.Context(), appOf(r).Name, opts, func(l pier.LogLine) error { return st.send(l) })
	return st.end(err, nil)
}

// runRequest is the body of POST /v1/apps/{app}/run. Command is the argv
// of the process: it is run as given, never through a shell (send
// ["sh", "-c", "..."] for one). Stdin is not supported.
type runRequest struct {
	Command []string `json:"command"`
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) (any, error) {
	rec, err := s.running()
	if err != nil {
		return nil, err
	}
	var req runRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := pier.ValidateCommand(req.Command); err != nil {
		return nil, err
	}
	app := appOf(r).Name
	st := newStream(w, r, s.log)
	stdout := &runOutput{st: st, stream: pier.StreamStdout}
	stderr := &runOutput{st: st, stream: pier.StreamStderr}
	code, err := rec.Run(r.Context(), app, pier.RunOptions{Command: req.Command, Stdout: stdout, Stderr: stderr})
	stdout.flush()
	stderr.flush()
	if err != nil {
		return st.end(err, nil)
	}
	// Who ran something, and how it ended; never the command, which may
	// hold a secret.
	s.event(context.WithoutCancel(r.Context()), pier.Event{App: app, Actor: userOf(r).Username, Action: "ps.run", Detail: fmt.Sprintf("one-off process exited with status %d", code)})
	return st.end(nil, pier.RunFrame{Exit: &code})
}

// runOutput turns what a one-off process writes on one stream into frames.
// A UTF-8 sequence split between two writes is held back until it is
// whole, so that frames (JSON strings) never break a character.
type runOutput struct {
	st      *ndjsonStream
	stream  string
	mu      sync.Mutex
	partial []byte
}

func (o *runOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(p)
	data := p
	if len(o.partial) > 0 {
		data = append(o.partial, p...)
		o.partial = nil
	}
	if whole := trimPartialRune(data); len(whole) < len(data) {
		o.partial = append([]byte(nil), data[len(whole):]...)
		data = whole
	}
	if len(data) == 0 {
		return n, nil
	}
	if err := o.st.send(pier.RunFrame{Stream: o.stream, Data: string(data)}); err != nil {
		return 0, err
	}
	return n, nil
}

// flush sends what is held back, once the process has exited.
func (o *runOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		_ = o.st.send(pier.RunFrame{Stream: o.stream, Data: string(o.partial)})
		o.partial = nil
	}
}
