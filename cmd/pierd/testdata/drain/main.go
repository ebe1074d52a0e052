// A sample app for TestSIGTERMUnderLoad: / answers at once, /slow?ms=N
// after N milliseconds, and /inflight?ms=N says how many /slow?ms=N
// requests it is serving.
//
// It stops as a careless app does: at SIGTERM it exits at once, so a
// request still in flight would be cut. Before exiting it appends to the
// file $DRAIN_LOG one JSON line of what it had served by then.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var (
	mu       sync.Mutex
	inflight = map[string]int{} // ms → requests in flight
	done     = map[string]int{} // ms → requests answered
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "fast")
	})
	http.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms := r.URL.Query().Get("ms")
		n, err := strconv.Atoi(ms)
		if err != nil || n < 0 || n > 60000 {
			http.Error(w, "ms: a number of milliseconds", http.StatusBadRequest)
			return
		}
		mu.Lock()
		inflight[ms]++
		mu.Unlock()
		time.Sleep(time.Duration(n) * time.Millisecond)
		fmt.Fprintf(w, "slow %d\n", n)
		// Counted once the answer is sent: a process stopped before this
		// point could not have answered.
		w.(http.Flusher).Flush()
		mu.Lock()
		inflight[ms]--
		done[ms]++
		mu.Unlock()
	})
	http.HandleFunc("/inflight", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := inflight[r.URL.Query().Get("ms")]
		mu.Unlock()
		fmt.Fprintln(w, n)
	})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		mu.Lock()
		total := 0
		for _, n := range inflight {
			total += n
		}
		line, _ := json.Marshal(map[string]any{"signal": "SIGTERM", "inflight": total, "done": done, "at": time.Now().UnixMilli()})
		mu.Unlock()
		if path := os.Getenv("DRAIN_LOG"); path != "" {
			if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666); err == nil {
				f.Write(append(line, '\n'))
				f.Close()
			}
		}
		fmt.Printf("%s\n", line)
		os.Exit(0)
	}()
	fmt.Println("drain app listening")
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
