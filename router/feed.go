package router

import "sync"

// Feed is the subscriber list of a RouteSource. A scheduler embeds one,
// and calls Notify whenever the ready web addresses of any app changed.
// The zero value is ready to use.
type Feed struct {
	notifyMu sync.Mutex // serializes Notify, so the last call sees the latest state
	mu       sync.Mutex
	subs     map[int]func()
	seq      int
}

// Subscribe calls fn on every Notify, never concurrently with itself. fn
// should be quick; it may call the source's Routes. The returned func
// unsubscribes.
func (f *Feed) Subscribe(fn func()) (cancel func()) {
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[int]func(){}
	}
	f.seq++
	id := f.seq
	f.subs[id] = fn
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

// Notify calls every subscriber, from the calling goroutine.
func (f *Feed) Notify() {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	f.mu.Lock()
	fns := make([]func(), 0, len(f.subs))
	for _, fn := range f.subs {
		fns = append(fns, fn)
	}
	f.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
