// Package bench holds Pier's API benchmarks: config:set and apps:info
// throughput and latency through the real HTTP API against a real Postgres,
// side by side with pgbench running the same SQL. The code is in the
// package's tests; see README.md for how to run them and the numbers.
package bench
