package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pierpaas/pier"
)

// Bounds of log reading.
const (
	logLineMax     = 64 << 10 // longer lines are cut here
	logConcurrency = 8        // pods read at once for the backlog
)

// logEntry is one line of a pod's log.
type logEntry struct {
	t    time.Time
	text string
	proc string
}

// Logs reads the logs of app's pods (of opts.Type, or all) from the pod log
// API and merges them by time: the last opts.Lines lines of all of them
// together, then, when following, every new line as it comes, from new pods
// too, until ctx ends. Each line is named after its process (web.1).
func (s *Scheduler) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	n := opts.Lines
	if n == 0 {
		n = pier.LogLinesDefault
	}
	if s.ownedNamespace(app) == nil && !opts.Follow {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The backlog: the last n lines of every started pod, merged.
	pods := startedPods(s.appPods(app, opts.Type))
	type result struct {
		entries []logEntry
		err     error
	}
	results := make([]result, len(pods))
	sem := make(chan struct{}, logConcurrency)
	var wg sync.WaitGroup
	for i, ip := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tail := int64(n)
			var es []logEntry
			err := s.readLog(ctx, ip, &corev1.PodLogOptions{Timestamps: true, TailLines: &tail}, func(e logEntry) error {
				es = append(es, e)
				return nil
			})
			results[i] = result{es, err}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil
	}
	var all []logEntry
	var firstErr error
	failed := 0
	// Where each pod's backlog ended: following resumes there.
	resume := map[types.UID]resumePoint{}
	for i, r := range results {
		if r.err != nil {
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", pods[i].name(), r.err)
			}
			s.log.DebugContext(ctx, "reading a pod log", "app", app, "pod", pods[i].pod.Name, "err", r.err)
			continue
		}
		all = append(all, r.entries...)
		resume[pods[i].pod.UID] = resumeAfter(r.entries)
	}
	if len(pods) > 0 && failed == len(pods) {
		return pier.Errorf(pier.EUNAVAILABLE, "cannot read the logs of %s: %s", app, firstErr)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
	if len(all) > n {
		all = all[len(all)-n:]
	}
	for _, e := range all {
		if err := fn(pier.LogLine{Time: e.t, App: app, Process: e.proc, Text: e.text}); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	return s.follow(ctx, app, opts.Type, pods, resume, fn)
}

// resumePoint is where a pod's log was read up to: following it again
// skips lines before t, and the first skip lines stamped exactly t.
type resumePoint struct {
	t    time.Time
	skip int
}

func resumeAfter(es []logEntry) resumePoint {
	if len(es) == 0 {
		return resumePoint{}
	}
	last := es[len(es)-1].t
	rp := resumePoint{t: last}
	for i := len(es) - 1; i >= 0 && es[i].t.Equal(last); i-- {
		rp.skip++
	}
	return rp
}

// startedPods keeps the pods whose container has started: the others
// have no log yet (the API answers with an error).
func startedPods(pods []indexedPod) []indexedPod {
	out := pods[:0:0]
	for _, ip := range pods {
		if started(ip.pod) {
			out = append(out, ip)
		}
	}
	return out
}

func started(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

// stream is a pod log being followed.
type stream struct {
	restarts int32 // of the pod when the stream opened
	ended    bool
	resume   resumePoint
}

// follow streams new lines of app's pods until ctx ends, opening a stream
// for every pod that starts (and again for a pod whose container restarted).
func (s *Scheduler) follow(ctx context.Context, app, typ string, backlog []indexedPod, resume map[types.UID]resumePoint, fn func(pier.LogLine) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, unwatch := s.watch(Namespace(app))
	defer unwatch()

	lines := make(chan logEntry, 256)
	type end struct {
		uid    types.UID
		resume resumePoint
	}
	ends := make(chan end, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	streams := map[types.UID]*stream{}

	open := func(ip indexedPod, rp resumePoint, since *metav1.Time) {
		st := &stream{restarts: restarts(ip.pod), resume: rp}
		streams[ip.pod.UID] = st
		opts := &corev1.PodLogOptions{Timestamps: true, Follow: true}
		if !rp.t.IsZero() {
			since = &metav1.Time{Time: rp.t}
		}
		opts.SinceTime = since
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := rp
			err := s.readLog(ctx, ip, opts, func(e logEntry) error {
				switch {
				case e.t.Before(rp.t):
					return nil
				case e.t.Equal(rp.t) && rp.skip > 0:
					rp.skip--
					return nil
				}
				if e.t.Equal(last.t) {
					last.skip++
				} else {
					last = resumePoint{t: e.t, skip: 1}
				}
				select {
				case lines <- e:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && ctx.Err() == nil {
				s.log.DebugContext(ctx, "following a pod log", "app", app, "pod", ip.pod.Name, "err", err)
			}
			select {
			case ends <- end{ip.pod.UID, last}:
			case <-ctx.Done():
			}
		}()
	}
	// Pods read for the backlog resume where it ended; pods without any
	// line there are read from their start.
	for _, ip := range backlog {
		rp, ok := resume[ip.pod.UID]
		if !ok {
			continue
		}
		open(ip, rp, nil)
	}
	// scan opens streams for pods that started since, or restarted.
	scan := func() {
		for _, ip := range startedPods(s.appPods(app, typ)) {
			st := streams[ip.pod.UID]
			switch {
			case st == nil:
				// A new pod: its log begins with it (kwok serves one
				// file for every pod; real pods have no older lines).
				since := ip.pod.CreationTimestamp
				open(ip, resumePoint{}, &since)
			case st.ended && restarts(ip.pod) > st.restarts && ip.pod.DeletionTimestamp == nil:
				open(ip, st.resume, nil)
			}
		}
	}
	scan()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-lines:
			if err := fn(pier.LogLine{Time: e.t, App: app, Process: e.proc, Text: e.text}); err != nil {
				return err
			}
		case e := <-ends:
			if st := streams[e.uid]; st != nil {
				st.ended, st.resume = true, e.resume
			}
		case <-w.ch:
			scan()
		}
	}
}

// readLog reads one pod's log with opts, calling fn for each line.
func (s *Scheduler) readLog(ctx context.Context, ip indexedPod, opts *corev1.PodLogOptions, fn func(logEntry) error) error {
	rc, err := s.client.CoreV1().Pods(ip.pod.Namespace).GetLogs(ip.pod.Name, opts).Stream(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	proc := ip.name()
	return scanLines(rc, func(line []byte) error {
		e := parseLogLine(line, opts.Timestamps)
		e.proc = proc
		return fn(e)
	})
}

// parseLogLine splits "<RFC3339Nano> text" as the API writes lines with
// timestamps. A line without a timestamp is stamped now.
func parseLogLine(line []byte, timestamps bool) logEntry {
	if timestamps {
		if i := bytes.IndexByte(line, ' '); i > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(line[:i])); err == nil {
				return logEntry{t: t.UTC(), text: string(line[i+1:])}
			}
		}
	}
	return logEntry{t: time.Now().UTC(), text: string(line)}
}

// scanLines calls fn with each line of r, without its newline; lines
// longer than logLineMax are cut there.
func scanLines(r io.Reader, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var buf []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 && len(buf) < logLineMax {
			room := logLineMax - len(buf)
			if len(chunk) > room {
				chunk = chunk[:room]
			}
			buf = append(buf, chunk...)
		}
		if err != nil {
			if len(buf) > 0 {
				if ferr := fn(bytes.TrimSuffix(buf, []byte("\r"))); ferr != nil {
					return ferr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if isPrefix {
			continue
		}
		if ferr := fn(bytes.TrimSuffix(buf, []byte("\r"))); ferr != nil {
			return ferr
		}
		buf = buf[:0]
	}
}
