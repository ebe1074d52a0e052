// Package bench holds Pier's benchmarks: config:set and apps:info
// throughput and latency through the real HTTP API against a real Postgres,
// side by side with pgbench running the same SQL (BenchmarkAPI); and the
// time from `git push` to the new code serving for the Go sample, cold and
// warm, against the bare CNB lifecycle on the same source (BenchmarkPush);
// and N apps × 3 replicas from the API request to all Ready on Kubernetes,
// against the same objects written with client-go alone (BenchmarkKubeApps).
// The code is in the package's tests; see README.md for how to run them and
// the numbers.
package bench
