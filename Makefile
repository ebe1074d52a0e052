# Pier's Makefile. `make help` lists the targets.
GO      ?= go
BIN     := bin
# Static binaries: one self-contained file per component.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath

.DEFAULT_GOAL := help
.PHONY: help build run test test-short vet bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/pier (the CLI) and bin/pierd (the server)
	$(GOBUILD) -o $(BIN)/pier ./cmd/pier
	$(GOBUILD) -o $(BIN)/pierd ./cmd/pierd

run: build ## start the whole platform on this machine (data in .pier/)
	@deploy/local/run

vet: ## go vet every package
	$(GO) vet ./...

test: vet ## run every test, integration tiers included, with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: ## the fast inner loop: unit tests only
	$(GO) test -short ./...

bench: ## API benchmarks against a real Postgres (see bench/README.md)
	$(GO) test -run '^$$' -bench . -benchtime 3s ./bench/

clean: ## remove build outputs (not .pier/, which holds your data)
	rm -rf $(BIN)
