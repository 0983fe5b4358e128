# The two commands: `make demo` (set up, then run Panoptes with demo cameras) and
# `make test` (set up, then every check and test). Setup is idempotent and caches
# everything outside the clone, under $(CACHE).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CACHE ?= $(or $(PANOPTES_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/panoptes)
export PANOPTES_CACHE := $(CACHE)
export CARGO_TARGET_DIR ?= $(CACHE)/target
# The machine's PostgreSQL, used by the #[sqlx::test] tests and the end-to-end tests.
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
# Where the demo's web server listens.
DEMO_LISTEN ?= 127.0.0.1:8080

.PHONY: setup demo test lint build config-docs screenshots

setup:
	scripts/setup.sh

build: setup
	source "$(CACHE)/env.sh" && cargo build --release --locked

demo: setup
	source "$(CACHE)/env.sh" && cargo run --release --locked -- demo --listen "$(DEMO_LISTEN)"

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

test: setup lint
	source "$(CACHE)/env.sh" && scripts/run-tests.sh

# Regenerates the reference table in docs/configuration.md from the code.
config-docs:
	cargo run -q -- config-reference > "$(CACHE)/config-reference.md"
	python3 -c 'import sys; p="docs/configuration.md"; s=open(p).read(); b="<!-- BEGIN GENERATED REFERENCE -->\n"; e="<!-- END GENERATED REFERENCE -->"; r=open(sys.argv[1]).read(); open(p,"w").write(s[:s.index(b)+len(b)]+r+s[s.index(e):])' "$(CACHE)/config-reference.md"

# Refreshes docs/screenshots/ with the web UI test's screenshots (a normal run keeps them in
# a scratch directory).
screenshots: setup
	source "$(CACHE)/env.sh" && cargo build --locked --quiet --bin panoptes && \
	  PANOPTES_SCREENSHOTS="$(CURDIR)/docs/screenshots" PANOPTES_BIN="$(CARGO_TARGET_DIR)/debug/panoptes" \
	  tests/browser/run.sh tests/browser/ui.test.mjs
