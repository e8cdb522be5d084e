# xferwatch — build, demo and tests. `make demo` and `make test` are the two quick-start commands.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/xferwatch
SHARED ?= ../shared
DEMO_OUT := out
LIVE_PKGS := tcpreplay prometheus iproute2 curl
# What make deb and test-deb need besides dpkg: dpkg-dev (dpkg-shlibdeps computes Depends),
# lintian, and man-db for `man -w`.
DEB_TEST_PKGS := dpkg-dev lintian man-db
# What the fleet tests need: real Redis servers (one alone, and a 3-master cluster made with
# redis-cli), started by the tests on free loopback ports, and openssl for the TLS test's
# certificates. The packaged service is not started.
FLEET_PKGS := redis-server redis-tools openssl

.PHONY: all deps deps-build deps-test build man deb demo test test-deb test-steps test-rust test-eve test-rules test-live soak bench bench-fleet bench-live score check lint msrv deny fmt clean install fuzz fuzz-smoke

all: build

# System packages. As root they are installed with apt-get; otherwise what to run is printed.
# deps-build: the libpcap headers and library, needed by every build (build, demo, check, msrv);
# without them the build stops.
# deps-test: what only the tests need (make test, test-eve, test-live, soak, test-rules): Python
# jsonschema for the EVE schema check, and for the live tests tcpreplay, prometheus (+ promtool),
# iproute2 and curl, and for make deb and test-deb dpkg-dev, lintian and man-db. As root the missing ones are installed (the prometheus package's own service is
# kept from starting with policy-rc.d and then disabled); otherwise the command is printed and the
# tests go on (those that need them then skip).
# deps: both.
deps: deps-build deps-test

deps-build:
	@if ! { [ -f /usr/include/pcap.h ] || [ -f /usr/include/pcap/pcap.h ]; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libpcap-dev"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpcap-dev >/dev/null; \
	  else \
	    echo "libpcap headers are missing: run 'sudo apt-get install libpcap-dev'"; exit 1; \
	  fi; \
	fi

deps-test:
	@if ! python3 -c 'import jsonschema' 2>/dev/null; then \
	  echo "installing the Python jsonschema package (EVE schema checks)"; \
	  python3 -m pip install --quiet jsonschema 2>/dev/null \
	    || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq \
	         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-jsonschema >/dev/null; } \
	    || echo "warning: no jsonschema for python3; the EVE schema test will be skipped"; \
	fi
	@missing=""; \
	for p in $(LIVE_PKGS) $(DEB_TEST_PKGS) $(FLEET_PKGS); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (live and package tests)"; \
	    made_policy=0; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1; \
	    fi; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
	      || echo "warning: could not install$$missing; the live tests that need them will be skipped"; \
	    [ "$$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; \
	    case " $$missing " in *" prometheus "*) \
	      systemctl disable --now prometheus.service >/dev/null 2>&1 \
	        || systemctl disable prometheus.service >/dev/null 2>&1 || true;; \
	    esac; \
	    case " $$missing " in *" redis-server "*) \
	      systemctl disable --now redis-server.service >/dev/null 2>&1 \
	        || systemctl disable redis-server.service >/dev/null 2>&1 || true;; \
	    esac; \
	  else \
	    echo "note: the live, package and fleet tests (make test-live, test-deb, the fleet tests) need: sudo apt-get install --no-install-recommends$$missing"; \
	  fi; \
	fi

# Always with --locked: the build uses exactly the versions in Cargo.lock. When Cargo.lock does not
# match the manifests, it stops and says so instead of silently resolving other versions.
build: deps-build
	@echo "$(CARGO) build --release --locked"
	@$(CARGO) build --release --locked || { \
	  if $(CARGO) metadata --locked --offline --format-version 1 2>&1 >/dev/null | grep -q 'lock file.*--locked'; then \
	    echo; \
	    echo "error: Cargo.lock does not match the Cargo.toml files. Run 'cargo update -w' (it updates"; \
	    echo "       only the workspace's own entries) and commit Cargo.lock with the manifest change."; \
	  fi; \
	  exit 1; \
	}

# The manual page and the shell completions, rendered by the binary from its clap definition
# (`xferwatch generate`, crates/xferwatch/src/docgen.rs): target/man/xferwatch.1.gz and
# target/completions/{xferwatch.bash,_xferwatch,xferwatch.fish}. The page's date is the last
# commit's (SOURCE_DATE_EPOCH, when not set already) and gzip -n stores no name or time, so the
# same commit gives the same bytes. A package installs them as /usr/share/man/man1/xferwatch.1.gz,
# /usr/share/bash-completion/completions/xferwatch, /usr/share/zsh/vendor-completions/_xferwatch
# and /usr/share/fish/vendor_completions.d/xferwatch.fish.
man: build
	@mkdir -p target/man target/completions
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
	  $(BIN) generate man target/man
	gzip -9nf target/man/xferwatch.1
	for sh in bash zsh fish; do $(BIN) generate completions $$sh target/completions; done

# The operator's package: target/debian/xferwatch_<version>-1_<arch>.deb, built by cargo-deb
# (CARGO_DEB_VERSION, installed with `cargo install --locked` when missing or another version) with
# --no-build from the release binary and what `make man` rendered, as [package.metadata.deb] in
# crates/xferwatch/Cargo.toml says. Gathered in target/release/pkg/ first (cargo-deb takes
# target/release/ as the target directory): the man page and completions, the unit with
# ExecStart=/usr/bin/xferwatch, the configuration as `make install` writes it, and the Debian
# changelog (version from Cargo.toml, date of the last commit). What it installs: docs/operations.md.
CARGO_DEB_VERSION := 3.8.0
deb: man
	@if ! cargo-deb --version 2>/dev/null | grep -qxF "cargo-deb $(CARGO_DEB_VERSION)"; then \
	  echo "$(CARGO) install --locked --version $(CARGO_DEB_VERSION) cargo-deb"; \
	  $(CARGO) install --locked --version $(CARGO_DEB_VERSION) cargo-deb || exit 1; \
	fi
	@rm -rf target/release/pkg && mkdir -p target/release/pkg
	cp target/man/xferwatch.1.gz target/completions/* target/release/pkg/
	sed 's|/usr/local/bin/xferwatch|/usr/bin/xferwatch|g' systemd/xferwatch.service > target/release/pkg/xferwatch.service
	sed $(INSTALLED_CONF) sensor.toml.example > target/release/pkg/sensor.toml
	@epoch=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)}; \
	version=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1); \
	{ echo "xferwatch ($$version-1) unstable; urgency=medium"; echo; \
	  echo "  * Package of xferwatch $$version."; echo; \
	  echo " -- xferwatch maintainers <xferwatch@example.org>  $$(LC_ALL=C date -u -R -d @$$epoch)"; \
	} > target/release/pkg/changelog
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
	  cargo-deb -p xferwatch --no-build --locked --strip --no-dbgsym

# Replays the bundled captures of real client/server software and shows what was found.
demo: build
	@mkdir -p $(DEMO_OUT)
	$(BIN) replay --force -c pcaps/demo.toml --eve $(DEMO_OUT)/demo-eve.json pcaps/*.pcap
	@echo
	@echo "EVE records written to $(DEMO_OUT)/demo-eve.json ($$(wc -l < $(DEMO_OUT)/demo-eve.json) lines); the first large-outbound alert:"
	@grep -m1 '"signature_id":1173001' $(DEMO_OUT)/demo-eve.json || head -n1 $(DEMO_OUT)/demo-eve.json

# The whole run is also written to target/test.log; at the end, whether it passed or not, the
# checks that were skipped (lines "SKIP: …", "SKIP <what>: …" or "…: skipped: …", e.g. for want of
# ../shared or of root) are listed once each by scripts/skip-summary.sh, or "Skipped: none". The
# exit status is that of the tests (test-steps: the steps themselves, without log and summary).
DRY_RUN = $(findstring n,$(firstword -$(MAKEFLAGS)))
test: deps-test build
	@mkdir -p target
	@set -o pipefail; $(MAKE) --no-print-directory test-steps 2>&1 | tee target/test.log; \
	status=$$?; [ -n "$(DRY_RUN)" ] || { echo; bash scripts/skip-summary.sh target/test.log; }; \
	exit $$status

test-steps:
	$(CARGO) test --release --workspace --locked
	@$(MAKE) --no-print-directory test-eve
	@$(MAKE) --no-print-directory test-rules
	@$(MAKE) --no-print-directory test-deb
	@$(MAKE) --no-print-directory fuzz-smoke

# Every event must validate against Suricata's own EVE schema.
test-eve: deps-test build
	@if [ -f $(SHARED)/tools/eve_check.py ] && python3 -c 'import jsonschema' 2>/dev/null; then \
	  mkdir -p $(DEMO_OUT); \
	  $(BIN) replay -q --force -c pcaps/demo.toml --eve $(DEMO_OUT)/schema-eve.json pcaps/*.pcap; \
	  for f in $(SHARED)/corpus/public/pcaps/*; do $(BIN) replay -q --eve - "$$f" 2>/dev/null; done > $(DEMO_OUT)/schema-corpus-eve.json; \
	  python3 $(SHARED)/tools/eve_check.py $(DEMO_OUT)/schema-eve.json $(DEMO_OUT)/schema-corpus-eve.json; \
	else \
	  echo "SKIP eve schema check: $(SHARED)/tools/eve_check.py or python3 jsonschema not available"; \
	fi

# The Prometheus alerting rules (deploy/prometheus): promtool checks them and runs their unit
# tests when it is installed (the prometheus package; make deps-test installs it as root). Every
# rule's runbook anchor must be a heading of docs/operations.md (GitHub-style anchors, code blocks
# skipped).
RULES := deploy/prometheus/xferwatch-rules.yml
test-rules: deps-test
	@if command -v promtool >/dev/null; then \
	  promtool check rules $(RULES) && promtool test rules $(RULES:.yml=.test.yml); \
	else \
	  echo "SKIP prometheus rules: promtool not installed (make deps-test installs prometheus)"; \
	fi
	@anchors=$$(awk '/^```/ { f = !f } !f && /^#+ / { sub(/^#+ /, ""); h = tolower($$0); \
	    gsub(/[^a-z0-9 _-]/, "", h); gsub(/ /, "-", h); print h }' docs/operations.md); \
	rules=$$(grep -c '^ *- alert:' $(RULES)); \
	links=$$(sed -n 's/^ *runbook: *"docs\/operations\.md#\([^"]*\)".*/\1/p' $(RULES)); \
	bad=0; \
	[ "$$(printf '%s\n' "$$links" | grep -c .)" = "$$rules" ] \
	  || { echo "runbooks: $$rules alerts but $$(printf '%s\n' "$$links" | grep -c .) runbook annotations"; bad=1; }; \
	for a in $$links; do \
	  printf '%s\n' "$$anchors" | grep -qxF "$$a" \
	    || { echo "runbooks: #$$a has no heading in docs/operations.md"; bad=1; }; \
	done; \
	[ $$bad = 0 ] && echo "runbooks: $$rules alerts, every runbook anchor is a heading of docs/operations.md"

# The package (root only; prints "test-deb: skipped: ..." otherwise, or without dpkg): make deb,
# then scripts/test-deb.sh checks its contents and conffiles, runs lintian (fails on errors),
# installs it with dpkg -i (nothing is started), checks the binary, the man page, the user and the
# directories, purges it and checks that nothing is left. It refuses to run on a machine where
# xferwatch is installed already (package, /usr/bin/xferwatch or the user). The recipe must not
# name $(MAKE): make would then run it under `make -n` too.
test-deb:
	@bash scripts/test-deb.sh

# Fuzzing (fuzz/README.md): every target for FUZZ_SECONDS each, seeds generated from pcaps/ first;
# fails on a crash. fuzz-smoke is the short run `make test` does. Both need the nightly toolchain
# (skipped with a message without it) and install cargo-fuzz when it is missing.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
fuzz:
	SHARED=$(abspath $(SHARED)) FUZZ_LOGS=logs-fuzz bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	SHARED=$(abspath $(SHARED)) bash fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# Live-capture tests (root only; each test prints "skipped: ..." otherwise): the daemon in a
# throw-away network namespace, fed by tcpreplay, scraped by Prometheus.
test-live: deps-build deps-test
	$(CARGO) test --release -p xferwatch --test live -- --nocapture

# Soak (root only; says "skipped" otherwise): the live daemon in a throw-away network namespace for
# SOAK_SECONDS (default 300) under looped tcpreplay of pcaps/*.pcap and of generated traffic, with
# EVE rotations; samples resident memory and open descriptors, prints their slope after the warm-up
# and fails on growth beyond the tolerance or a descriptor leak. Settings: see bench/soak.sh.
soak: deps-build deps-test
	$(CARGO) build --release -p xferwatch -p xferwatch-gen
	bash bench/soak.sh

# Live packet loss at top speed (root): tcpreplay onto a veth, the daemon with the example
# configuration on the other end; two workloads (bench/live.sh says how).
bench-live: deps-build deps-test
	$(CARGO) build --release -p xferwatch -p xferwatch-gen
	bash bench/live.sh

# sensor.toml.example as installed (make install, make deb): EVE to /var/log, baselines in /var/lib.
INSTALLED_CONF := -e 's|^eve_path = "eve.json"|eve_path = "/var/log/xferwatch/eve.json"|' \
	-e 's|^state_file = ""|state_file = "/var/lib/xferwatch/baseline.json"|' \
	-e 's|^dir = "evidence"|dir = "/var/lib/xferwatch/evidence"|' \
	-e 's|^spool_dir = "spool"|spool_dir = "/var/lib/xferwatch/redis-spool"|'

# Installs the daemon as a systemd service (root). DESTDIR stages the files instead; the system
# user and the ownership of the configuration are then left to the package.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)/usr/local/bin/xferwatch
	@if [ -z "$(DESTDIR)" ] && ! getent passwd xferwatch >/dev/null; then \
	  echo "creating system user xferwatch"; \
	  if getent group xferwatch >/dev/null; then grp="-g xferwatch"; else grp="-U"; fi; \
	  useradd --system --no-create-home --home-dir /var/lib/xferwatch --shell /usr/sbin/nologin $$grp xferwatch; \
	fi
	install -d -m 0755 $(DESTDIR)/etc/xferwatch
	@if [ -e $(DESTDIR)/etc/xferwatch/sensor.toml ]; then \
	  echo "keeping the existing $(DESTDIR)/etc/xferwatch/sensor.toml"; \
	else \
	  echo "installing $(DESTDIR)/etc/xferwatch/sensor.toml (from sensor.toml.example; EVE to /var/log/xferwatch, baselines in /var/lib/xferwatch)"; \
	  sed $(INSTALLED_CONF) sensor.toml.example > $(DESTDIR)/etc/xferwatch/sensor.toml; \
	  chmod 0640 $(DESTDIR)/etc/xferwatch/sensor.toml; \
	  if [ -z "$(DESTDIR)" ]; then chgrp xferwatch /etc/xferwatch/sensor.toml; fi; \
	fi
	install -D -m 0644 systemd/xferwatch.service $(DESTDIR)/etc/systemd/system/xferwatch.service
	install -D -m 0644 systemd/xferwatch.logrotate $(DESTDIR)/etc/logrotate.d/xferwatch
	@echo
	@echo "Installed. Next:"
	@echo "  1. set [capture] interfaces in /etc/xferwatch/sensor.toml, then check it:"
	@echo "       xferwatch check-config /etc/xferwatch/sensor.toml"
	@echo "  2. systemctl daemon-reload && systemctl enable --now xferwatch.service"
	@echo "  3. systemctl status xferwatch; EVE records go to /var/log/xferwatch/eve.json"

# Throughput against a bare libpcap read loop and ndpiReader on two generated ~1 GiB captures
# (cached in bench-data/), then the micro-benchmarks. See docs/performance.md.
bench: build
	@command -v ndpiReader >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libndpi-bin time >/dev/null 2>&1; } || true
	bash bench/run.sh
	$(CARGO) bench -p xferwatch-wire -p xferwatch-stream -p xferwatch-fingerprint -p xferwatch-parsers

# What the fleet costs (bench/fleet.sh): the bench workloads replayed without a fleet, with [fleet]
# redis and with [output.redis] streaming too, against a redis-server of its own on a free loopback
# port (needs redis-server and redis-tools; make deps-test installs them as root). Prints replay
# time against no fleet, Redis commands per second per sensor and Redis memory. Settings: see the
# script (BENCH_BYTES, REPEAT, SYNC_INTERVAL). See docs/performance.md, "Fleet".
bench-fleet: deps-build
	$(CARGO) build --release --locked -p xferwatch -p xferwatch-gen
	bash bench/fleet.sh

# Scores the sensor on the public labelled corpus (needs ../shared).
score: build
	python3 $(SHARED)/tools/score.py --bin $(BIN) --corpus $(SHARED)/corpus/public

# Static checks, run by CI (.ci/run) before `make test`: formatting and clippy (make lint),
# rustdoc with warnings denied, a build with the Rust version Cargo.toml declares (make msrv), and
# cargo deny on licences, bans, sources and advisories (make deny). The lints and their levels are
# [workspace.lints] in Cargo.toml.
check: deps-build
	@$(MAKE) --no-print-directory lint
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked
	@$(MAKE) --no-print-directory msrv
	@$(MAKE) --no-print-directory deny

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Builds the workspace with the toolchain of `rust-version` in Cargo.toml, installed with rustup
# (minimal profile) when missing; skipped with a message where there is no rustup or the toolchain
# cannot be downloaded (a network problem is no verdict on the code). A build failure fails.
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"$$/\1/p' Cargo.toml)
msrv: deps-build
	@if ! command -v rustup >/dev/null; then \
	  echo "SKIP msrv: no rustup to install Rust $(MSRV) with"; exit 0; \
	fi; \
	if ! rustup run $(MSRV) cargo --version >/dev/null 2>&1; then \
	  echo "installing Rust $(MSRV) (rust-version in Cargo.toml)"; \
	  rustup toolchain install $(MSRV) --profile minimal \
	    || { echo "SKIP msrv: cannot install Rust $(MSRV) (toolchain server unreachable?)"; exit 0; }; \
	fi; \
	echo "rustup run $(MSRV) cargo build --workspace --locked"; \
	rustup run $(MSRV) cargo build --workspace --locked

# cargo deny with deny.toml (installed when missing); advisories are skipped with a message when
# the RustSec database cannot be fetched and no copy was fetched before. See .ci/deny.sh.
deny:
	bash .ci/deny.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(DEMO_OUT)
