// Command dockerfile-app is the app of TestPackDockerfile: a static server
// put into a FROM scratch image by its Dockerfile.
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from a Dockerfile"))
	})
	// /secret shows whether .dockerignore kept secret.txt out of the image.
	http.HandleFunc("/secret", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile("/secret.txt")
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
