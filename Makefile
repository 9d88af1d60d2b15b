# podpath: eBPF container-networking datapath and its packet-level conformance harness.
GO       ?= go
# Go lives in /usr/local/go on a fresh machine, not always on root's PATH.
export PATH := $(PATH):/usr/local/go/bin
ARTIFACTS ?= $(CURDIR)/artifacts
BENCH_COUNT ?= 1
# Root is needed for BPF and namespaces; tests that need it skip with a reason otherwise.

.PHONY: help deps generate drift build hubble test e2e bench demo mutants clean

help: ## Show the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Every target that needs a tool depends on deps: on a fresh Debian machine `make demo`
# or `make test` is the first command typed. install-deps.sh only asks dpkg when nothing
# is missing, so this costs a fraction of a second on a prepared machine.
deps: ## Install the Debian packages podpath uses if any is missing (as root; run by demo, test, bench, generate)
	@scripts/install-deps.sh

generate: deps ## Rebuild BPF objects and bpf2go bindings from bpf/ (needs clang, llvm-strip, libbpf-dev)
	$(GO) generate ./datapath/bpfobj/

drift: generate ## Fail if committed BPF objects or bindings differ from a fresh generate
	@git diff --exit-code --stat -- datapath/bpfobj || { echo "generated BPF code drifted from bpf/: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- datapath/bpfobj)" || { git status --porcelain -- datapath/bpfobj; echo "untracked generated files: commit them"; exit 1; }

build: ## Build bin/podpath, bin/podpath-agent and bin/podpath-cni
	$(GO) build -o bin/ ./cmd/...

hubble: ## Build the stock hubble CLI (github.com/cilium/cilium/hubble, version pinned in tools/hubble/go.mod) into bin/hubble
	cd tools/hubble && $(GO) build -o ../../bin/hubble github.com/cilium/cilium/hubble

test: deps hubble ## All tests as root: unit, BPF test-run fixtures, topology and e2e suites (JUnit in artifacts/)
	@mkdir -p $(ARTIFACTS)
	$(GO) vet ./...
	PODPATH_JUNIT=$(ARTIFACTS)/junit-e2e.xml $(GO) test -count=1 -timeout 20m ./...

e2e: deps ## Only the ginkgo e2e suites (LABELS=... to filter)
	@mkdir -p $(ARTIFACTS)
	PODPATH_JUNIT=$(ARTIFACTS)/junit-e2e.xml $(GO) test -count=1 -timeout 20m ./e2e/ -args -ginkgo.v $(if $(LABELS),-ginkgo.label-filter='$(LABELS)')

# The bench recipes pipe through tee: pipefail keeps a failing benchmark failing.
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench: deps build ## BPF_PROG_TEST_RUN ns/pkt (and x the empty-program floor), iperf3 throughput ratios: one table, artifacts/bench.{txt,json} (BENCH_COUNT=N repeats)
	@mkdir -p $(ARTIFACTS)
	$(GO) test -count=$(BENCH_COUNT) -run '^$$' -bench . -benchtime 200000x ./datapath/progtest/ | tee $(ARTIFACTS)/bench.txt
	$(GO) test -count=$(BENCH_COUNT) -run '^$$' -bench . ./datapath/maglev/ | tee -a $(ARTIFACTS)/bench.txt
	PODPATH_AGENT=$(CURDIR)/bin/podpath-agent $(GO) test -count=$(BENCH_COUNT) -run '^$$' -bench 'Throughput|AgentServices' -benchtime 1x ./scenarios/ | tee -a $(ARTIFACTS)/bench.txt
	@echo
	./bin/podpath bench parse $(ARTIFACTS)/bench.txt --json $(ARTIFACTS)/bench.json
	@echo "compare with another run: ./bin/podpath bench compare OLD/bench.json $(ARTIFACTS)/bench.json"

demo: deps build hubble ## Two-node topologies hop by hop, then the whole scenario catalog (conformance); everything torn down
	./bin/podpath demo --artifacts $(ARTIFACTS)/demo
	./bin/podpath conformance --report $(ARTIFACTS)/conformance

# Not part of test: it rebuilds and runs scenarios once per mutant (tens of minutes).
mutants: deps ## Mutation self-test: each mutants/*.patch bug in a scratch clone, caught by which catalog check? (MUTANTS=a,b; artifacts/mutants.{txt,json})
	ARTIFACTS=$(ARTIFACTS) scripts/mutants.sh

clean: ## Remove leftovers of crashed runs (namespaces, processes) and build outputs
	-$(GO) run ./cmd/podpath clean
	rm -rf bin $(ARTIFACTS)
