# Pier's Makefile. `make help` lists the targets.
GO      ?= go
BIN     := bin
# Static binaries: one self-contained file per component.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath

.DEFAULT_GOAL := help
.PHONY: help build lifecycle buildpacks builder-image run kube kube-up manifests test test-short chaos vet bench bench-push bench-kube bench-pack bench-router bench-propagation clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: lifecycle buildpacks ## build bin/pier (the CLI), bin/pierd (the server), the lifecycle and buildpacks
	$(GOBUILD) -o $(BIN)/pier ./cmd/pier
	$(GOBUILD) -o $(BIN)/pierd ./cmd/pierd

# The CNB lifecycle, pinned in go.mod as a tool. It is one binary that picks
# its phase from argv[0], hence the symlinks; static, so it runs anywhere.
LIFECYCLE_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/buildpacks/lifecycle)
LIFECYCLE_PHASES  := detector analyzer restorer builder exporter creator extender rebaser

lifecycle: ## build the CNB lifecycle and launcher into bin/lifecycle/
	@mkdir -p $(BIN)/lifecycle
	$(GOBUILD) -ldflags "-X github.com/buildpacks/lifecycle/cmd.Version=$(LIFECYCLE_VERSION:v%=%)" \
		-o $(BIN)/lifecycle/lifecycle github.com/buildpacks/lifecycle/cmd/lifecycle
	$(GOBUILD) -ldflags "-X github.com/buildpacks/lifecycle/cmd.Version=$(LIFECYCLE_VERSION:v%=%)" \
		-o $(BIN)/lifecycle/launcher github.com/buildpacks/lifecycle/cmd/launcher
	@for p in $(LIFECYCLE_PHASES); do ln -sf lifecycle $(BIN)/lifecycle/$$p; done

buildpacks: ## build Pier's buildpacks (Go, Node.js, Python, static, Procfile) into bin/buildpacks/
	$(GOBUILD) -o $(BIN)/pier-buildpack ./buildpacks/cmd/pier-buildpack
	$(BIN)/pier-buildpack install $(BIN)/buildpacks

# Pier's offline CNB builder (package builder/stack): Debian bookworm base
# images made with debootstrap (needs root the first time; cached in
# ~/.cache/pier/stack), this machine's Go and Node.js, the lifecycle and the
# buildpacks above. Nothing is pulled; images already made are kept.
builder-image: lifecycle buildpacks ## make the offline CNB builder image pier/builder in the local Docker daemon (pack build --builder)
	$(GO) run ./builder/stack/cmd/pier-stack -lifecycle $(BIN)/lifecycle -buildpacks $(BIN)/buildpacks

run: build ## start the whole platform on this machine (data in .pier/)
	@deploy/local/run

# The Kubernetes control plane of the tests (internal/testenv): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from
# the Go module proxy at the versions pinned in internal/testenv/kubebuild.go
# and cached in ~/.cache/pier/kube-<versions>/. A cold build takes 10–30 minutes on two cores,
# so it runs here, before go test and its timeout.
PIER_KUBE := $(GO) run ./internal/testenv/cmd/pier-kube

kube: ## build the tests' Kubernetes control plane into ~/.cache/pier (cold: 10–30 min; then instant)
	$(PIER_KUBE) build

kube-up: ## run that control plane with fake (kwok) nodes on loopback, for kubectl and `pierd --scheduler=kubernetes`
	$(GOBUILD) -o $(BIN)/pier-kube ./internal/testenv/cmd/pier-kube
	$(BIN)/pier-kube up # builds the binaries first if need be

# The plain manifests for people without Helm: the chart rendered with its
# default values by Helm (built from the Go module proxy, cached in
# ~/.cache/pier/helm-<version>). TestManifestsUpToDate fails when they drift.
manifests: ## render deploy/helm/pier into deploy/manifests/pier.yaml
	PIER_UPDATE_MANIFESTS=1 $(GO) test -count=1 -run '^TestManifestsUpToDate$$' ./deploy/helm/

vet: ## go vet every package
	$(GO) vet ./...

test: vet kube ## run every test, integration tiers included (Kubernetes too), with the race detector
	$(GO) test -race -count=1 -timeout 45m ./...

# TestChaos (cmd/pierd/chaos_test.go) runs 20 rounds in `make test`; here N.
# A round takes a few seconds; PIER_CHAOS_SEED=<seed it printed> replays a run.
N ?= 200
chaos: ## N rounds (default 200) of random operations with random SIGKILLs on pierd all, checking invariants after each (needs root)
	$(GO) test -count=1 -run '^TestChaos$$' -timeout 2h -v ./cmd/pierd/ -chaos $(N)

test-short: ## the fast inner loop: unit tests only
	$(GO) test -short ./...

bench: ## API benchmarks against a real Postgres (see bench/README.md)
	$(GO) test -run '^$$' -bench API -benchtime 3s ./bench/

bench-push: ## git push to serving of the Go sample, cold and warm, against the bare lifecycle (see bench/README.md)
	$(GO) test -run '^$$' -bench Push -benchtime 5x -timeout 30m ./bench/

bench-kube: kube ## N apps × 3 replicas to Ready through Pier on Kubernetes, against client-go alone (PIER_BENCH_KUBE_APPS, default 1000; see bench/README.md)
	$(GO) test -run '^$$' -bench KubeApps -benchtime 1x -timeout 2h ./bench/

bench-pack: ## the pack strategy building the Go sample, cold and warm, against the pack CLI (see bench/README.md)
	$(GO) test -run '^$$' -bench PackBuild -benchtime 5x -timeout 30m ./bench/

bench-propagation: ## time from a routing change (domains:add) returning to pierd all's router and a `pierd router` serving it, p50/p99 over 50 changes (PIER_BENCH_PROPAGATION_N) against 250 ms (see bench/README.md)
	$(GO) test -run '^$$' -bench Propagation -benchtime 1x -timeout 20m ./bench/

bench-router: ## Pier's router against nginx (1 worker) in front of one backend, driven by wrk, 1 and 1,000 hosts (needs nginx, wrk; see bench/README.md)
	$(GO) test -run '^$$' -bench RouterVsNginx -benchtime 1x -timeout 30m ./bench/

clean: ## remove build outputs (not .pier/, which holds your data)
	rm -rf $(BIN)
