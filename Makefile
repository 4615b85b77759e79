# understudy's build. `make test` is what CI runs (.ci/run); it installs what
# it needs first, so a fresh Debian machine needs nothing but this repository.

GO            ?= go
CONSUL_PIN    := v1.20.6
# Syncthing: the version packaging/syncthing requires, the same the main
# module imports lib/protocol from (a test checks the two agree).
SYNCTHING_PIN := v1.30.0
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X main.version=$(VERSION)
# Debian packages the tests and the dev cluster run for real (systemd is the
# init of the tests' SystemdHosts, entered with unshare and nsenter of util-linux;
# iproute2 and nftables make the tests' hosts with network stacks of their own
# and their partitions).
APT_PACKAGES  := postgresql-15 postgresql-client-15 iproute2 nftables procps haproxy rsync systemd util-linux

export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: all demo build deps apt consul syncthing staticcheck test test-short lint vet fmt bench-checkrunner bench-failover bench-files chaos clean deb deb-test

all: build

# The README's first command: a local three-node cluster (Consul, PostgreSQL
# and the daemons per node, HAProxy in front), a failover shown, the cluster
# left running. DEV_DIR is where it lives.
DEV_DIR ?= /tmp/understudy-dev
demo: deps build
	@bin/understudy dev down --dir $(DEV_DIR) >/dev/null 2>&1 || true
	bin/understudy dev up --dir $(DEV_DIR)
	bin/understudy dev demo --dir $(DEV_DIR)
	@echo
	@bin/understudy dev status --dir $(DEV_DIR)
	@echo
	@echo "The cluster keeps running. Stop it with: bin/understudy dev down --dir $(DEV_DIR)"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/understudy ./cmd/understudy

deps: apt consul syncthing staticcheck

# Installs only what is missing, so a second run costs nothing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
		$$SUDO pkill -u postgres -x postgres 2>/dev/null || true; \
	fi

# The pinned Consul agent, built from packaging/consul (about 4 minutes cold);
# skipped when bin/consul already is the pinned version.
consul:
	@if bin/consul version 2>/dev/null | grep -q "^Revision $(CONSUL_PIN)$$"; then \
		echo "bin/consul is $(CONSUL_PIN)"; \
	else \
		echo "building consul $(CONSUL_PIN) into bin/consul (takes a few minutes)"; \
		mkdir -p bin && cd packaging/consul && $(GO) build -trimpath \
			-ldflags '-s -w -X github.com/hashicorp/consul/version.GitCommit=$(CONSUL_PIN)' \
			-o ../../bin/consul . ; \
	fi

# The pinned Syncthing, built from packaging/syncthing without the web GUI's
# assets (tag noassets: understudy drives Syncthing through its REST API
# only); skipped when bin/syncthing already is the pinned version.
syncthing:
	@if bin/syncthing --version 2>/dev/null | grep -q "^syncthing $(SYNCTHING_PIN) "; then \
		echo "bin/syncthing is $(SYNCTHING_PIN)"; \
	else \
		echo "building syncthing $(SYNCTHING_PIN) into bin/syncthing"; \
		mkdir -p bin && cd packaging/syncthing && $(GO) build -tags noassets -trimpath \
			-ldflags '-s -w -X github.com/syncthing/syncthing/lib/build.Version=$(SYNCTHING_PIN)' \
			-o ../../bin/syncthing github.com/syncthing/syncthing/cmd/syncthing ; \
	fi

staticcheck:
	@test -x bin/staticcheck || GOBIN=$(CURDIR)/bin $(GO) install $(STATICCHECK)

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: vet staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	bin/staticcheck ./...

# Integration tests start real Consul and PostgreSQL; -short skips them.
# One package at a time (-p 1): each integration package runs real clusters
# that keep both cores busy, and failover bounds measured in seconds do not
# hold with another package's clusters beside them (seen: a dev cluster's
# active losing its lock under the handler-runner tests' load). It costs
# about a minute here: 10 minutes instead of 9.
test: deps lint
	$(GO) test -race -count=1 -p 1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

# RSS and CPU of a check-runner at interval 1s against real Consul and
# PostgreSQL; prints the figures the README reports.
bench-checkrunner: deps
	$(GO) test -run '^$$' -bench BenchmarkCheckRunner -benchtime 1x -count 1 -timeout 10m ./checkrunner/

# Failovers of each kind (PostgreSQL kill, node kill, node kill with the
# node's network cut on network-namespace hosts, switchover) on three-node
# clusters with the default configuration; prints min/median/max of
# detection, election, promotion and first write.
# UNDERSTUDY_BENCH_RUNS sets the runs of each kind (default 3).
bench-failover: deps
	$(GO) test -run '^$$' -bench BenchmarkFailover -benchtime 1x -count 1 -timeout 30m ./handlerrunner/

# Syncthing mirroring a tree of 10,000 files (1 GiB) and a 1 MiB change in
# a 1 GiB file from one send-only node to two receive-only ones on loopback,
# against rsync -a of the same data to two rsync daemons; prints both.
# Needs about 8 GiB of free space under $TMPDIR.
bench-files: deps
	$(GO) test -run '^$$' -bench BenchmarkFilesSync -benchtime 1x -count 1 -timeout 30m ./replication/files/

# The chaos suite: random faults (kills, SIGSTOPs, partitions both ways,
# Consul restarts, a full disk) on a three-node cluster of network-namespace
# hosts with a writer on every node's PostgreSQL; prints a table, a row per
# kind of fault. Not part of `make test`. CHAOS_FAULTS faults (default 30;
# about 12 s each here), CHAOS_MODE sync (default) or async,
# CHAOS_SEED repeats a draw, CHAOS_OUTAGE failsafe (default) or fence is
# the consul.outage the Consul outage fault meets. The daemons' logs go to
# CHAOS_LOG.
CHAOS_FAULTS ?= 30
CHAOS_MODE   ?= sync
CHAOS_OUTAGE ?= failsafe
CHAOS_LOG    ?= /tmp/understudy-chaos.log
# CHAOS_PARTITION_MODE=active-minority runs the partitions of that mode
# instead, on a dev cluster in network namespaces (about 70 s each):
# every side takes writes, and after each heal the side written last must
# be the one left, its rows whole, the others' reported kept aside.
CHAOS_PARTITION_MODE ?= fence
chaos: deps build
ifeq ($(CHAOS_PARTITION_MODE),active-minority)
	@echo "chaos: $(CHAOS_FAULTS) partitions in partition_mode active-minority on a dev cluster in network namespaces; the whole log goes to $(CHAOS_LOG)"
	@rm -f $(CHAOS_LOG).table
	@PATH=$(CURDIR)/bin:$$PATH CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_SEED=$(CHAOS_SEED) CHAOS_TABLE=$(CHAOS_LOG).table \
		$(GO) test -tags chaos -run '^TestChaosActiveMinority$$' -count 1 -v -timeout 12h ./internal/devcluster/ >$(CHAOS_LOG) 2>&1; rc=$$?; \
		grep -E '^ +chaos_test.go:[0-9]+: (fault|chaos:)|minority_test.go:[0-9]+: .*(is not on the active|is on the active|reports [0-9]+ commits)' $(CHAOS_LOG) | sed 's/^ *//'; \
		echo; cat $(CHAOS_LOG).table 2>/dev/null; \
		[ $$rc = 0 ] || { echo "chaos: FAILED (exit $$rc); see $(CHAOS_LOG)"; tail -n 20 $(CHAOS_LOG); }; exit $$rc
else
	@echo "chaos: $(CHAOS_FAULTS) faults in $(CHAOS_MODE) mode, consul.outage $(CHAOS_OUTAGE); the whole log goes to $(CHAOS_LOG)"
	@rm -f $(CHAOS_LOG).table
	@CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_MODE=$(CHAOS_MODE) CHAOS_OUTAGE=$(CHAOS_OUTAGE) CHAOS_SEED=$(CHAOS_SEED) CHAOS_TABLE=$(CHAOS_LOG).table \
		$(GO) test -tags chaos -run '^TestChaos$$' -count 1 -v -timeout 12h ./handlerrunner/ >$(CHAOS_LOG) 2>&1; rc=$$?; \
		grep -E '^ +chaos_test.go:[0-9]+: (fault|chaos:)|two writers|lost in synchronous|: not whole' $(CHAOS_LOG) | sed 's/^ *//'; \
		echo; cat $(CHAOS_LOG).table 2>/dev/null; \
		[ $$rc = 0 ] || { echo "chaos: FAILED (exit $$rc); see $(CHAOS_LOG)"; tail -n 20 $(CHAOS_LOG); }; exit $$rc
endif

# The Debian package, understudy_<version>_amd64.deb in DEB_OUT, built by
# packaging/deb/build.sh with dpkg-deb: /usr/bin/understudy, the pinned
# Consul and Syncthing in /usr/lib/understudy/bin, the units, completion
# and man pages from the cobra commands. lintian checks it (deb-test).
DEB_OUT ?= .
deb: consul syncthing
	@dpkg-query -W -f='$${Status}' lintian 2>/dev/null | grep -q "install ok installed" || { \
		echo "installing: lintian"; SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends lintian; }
	mkdir -p build/deb
	$(GO) build -trimpath -buildmode=pie -ldflags '-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now $(LDFLAGS)' -o build/deb/understudy ./cmd/understudy
	VERSION=$(VERSION) SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) packaging/deb/build.sh build/deb/understudy bin/consul bin/syncthing $(DEB_OUT) > build/deb/path
	@echo "built $$(cat build/deb/path)"

# make deb, then lintian (no error) and packaging/deb's tests: the
# package's file list and control fields, and the package installed with
# apt-get on three SystemdHosts whose / is an overlay of the machine's
# (which is never written), `cluster start` and two `cluster join`s from the
# installed binaries, a failover, remove and purge. About five minutes, as root: not part of make test.
deb-test: deb
	lintian --fail-on error $$(cat build/deb/path)
	UNDERSTUDY_DEB=$$(realpath $$(cat build/deb/path)) $(GO) test -count=1 -run 'TestDeb' ./packaging/deb/

clean:
	rm -rf bin build
