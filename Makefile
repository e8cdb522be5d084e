# xferwatch — build, demo and tests. `make demo` and `make test` are the two quick-start commands.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/xferwatch
SHARED ?= ../shared
DEMO_OUT := out

.PHONY: all deps build demo test test-rust test-eve score lint fmt clean

all: build

# System packages the build and tests need. As root they are installed with apt-get; otherwise the
# command to run is printed and the build stops.
deps:
	@if ! { [ -f /usr/include/pcap.h ] || [ -f /usr/include/pcap/pcap.h ]; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libpcap-dev"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpcap-dev >/dev/null; \
	  else \
	    echo "libpcap headers are missing: run 'sudo apt-get install libpcap-dev'"; exit 1; \
	  fi; \
	fi
	@if ! python3 -c 'import jsonschema' 2>/dev/null; then \
	  echo "installing the Python jsonschema package (EVE schema checks)"; \
	  python3 -m pip install --quiet jsonschema 2>/dev/null \
	    || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-jsonschema >/dev/null; } \
	    || echo "warning: no jsonschema for python3; the EVE schema test will be skipped"; \
	fi

build: deps
	$(CARGO) build --release --locked 2>/dev/null || $(CARGO) build --release

# Replays the bundled captures of real client/server software and shows what was found.
demo: build
	@mkdir -p $(DEMO_OUT)
	$(BIN) replay -c pcaps/demo.toml --eve $(DEMO_OUT)/demo-eve.json pcaps/*.pcap
	@echo
	@echo "EVE records written to $(DEMO_OUT)/demo-eve.json ($$(wc -l < $(DEMO_OUT)/demo-eve.json) lines); the first large-outbound alert:"
	@grep -m1 '"signature_id":1173001' $(DEMO_OUT)/demo-eve.json || head -n1 $(DEMO_OUT)/demo-eve.json

test: build
	$(CARGO) test --release --workspace
	@$(MAKE) --no-print-directory test-eve

# Every event must validate against Suricata's own EVE schema.
test-eve: build
	@if [ -f $(SHARED)/tools/eve_check.py ] && python3 -c 'import jsonschema' 2>/dev/null; then \
	  mkdir -p $(DEMO_OUT); \
	  $(BIN) replay -q -c pcaps/demo.toml --eve $(DEMO_OUT)/schema-eve.json pcaps/*.pcap; \
	  for f in $(SHARED)/corpus/public/pcaps/*; do $(BIN) replay -q --eve - "$$f" 2>/dev/null; done > $(DEMO_OUT)/schema-corpus-eve.json; \
	  python3 $(SHARED)/tools/eve_check.py $(DEMO_OUT)/schema-eve.json $(DEMO_OUT)/schema-corpus-eve.json; \
	else \
	  echo "SKIP eve schema check: $(SHARED)/tools/eve_check.py or python3 jsonschema not available"; \
	fi

# Scores the sensor on the public labelled corpus (needs ../shared).
score: build
	python3 $(SHARED)/tools/score.py --bin $(BIN) --corpus $(SHARED)/corpus/public

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(DEMO_OUT)
