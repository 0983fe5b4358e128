#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, #[sqlx::test] database tests and the
# end-to-end tests in tests/ (cargo-nextest when installed, `cargo test` otherwise), then the
# browser tests in tests/browser (headless Chromium against the real binary; root needed for
# their network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -q -d "${DATABASE_URL:?DATABASE_URL must point at a PostgreSQL server}" 2>/dev/null; then
  echo "run-tests: PostgreSQL at DATABASE_URL is not answering (${DATABASE_URL%%\?*})." >&2
  echo "run-tests: start it, or point DATABASE_URL at a server where tests may create databases." >&2
  exit 1
fi

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast --profile ci || status=$?
else
  cargo test --locked --workspace --no-fail-fast || status=$?
fi

echo "run-tests: web UI unit tests (web-ui, vitest)"
npm test --prefix web-ui --silent || status=$?

echo "run-tests: browser tests (tests/browser, headless Chromium)"
cargo build --locked --quiet --bin panoptes
PANOPTES_BIN="${CARGO_TARGET_DIR:-target}/debug/panoptes" tests/browser/run.sh || status=$?
exit "$status"
