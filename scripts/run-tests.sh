#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, #[sqlx::test] database tests and the
# end-to-end tests in tests/. Uses cargo-nextest when installed, `cargo test` otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -q -d "${DATABASE_URL:?DATABASE_URL must point at a PostgreSQL server}" 2>/dev/null; then
  echo "run-tests: PostgreSQL at DATABASE_URL is not answering (${DATABASE_URL%%\?*})." >&2
  echo "run-tests: start it, or point DATABASE_URL at a server where tests may create databases." >&2
  exit 1
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --locked --workspace --no-fail-fast --profile ci
else
  exec cargo test --locked --workspace --no-fail-fast
fi
