// A sample app for the dashboard's browser test: it writes a log line for
// each request, which the dashboard's live log then shows.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s\n", r.Method, r.URL.Path)
		fmt.Fprintf(w, "weblog says %s\n", os.Getenv("GREETING"))
	})
	fmt.Println("weblog listening")
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
