// A sample app for the end-to-end tests: it greets with $GREETING.
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
	// /pid tells the processes of a scaled app apart.
	http.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, os.Getpid())
	})
	fmt.Printf("version %s listening\n", version)
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
