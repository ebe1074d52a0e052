// A sample app for the end-to-end test: it greets with $GREETING.
package main

import (
	"fmt"
	"net/http"
	"os"
)

const version = "one"

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s\n", os.Getenv("GREETING"), version)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
