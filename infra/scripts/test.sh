#!/usr/bin/env bash
# `make test`: start real Postgres and OpenSearch (unless FAILCAT_TEST_DATABASE_URL /
# FAILCAT_TEST_OPENSEARCH_URL point at running ones), run the whole suite, stop what started.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=infra/scripts
started=()

cleanup() {
  for svc in "${started[@]}"; do
    bash "$scripts/$svc.sh" stop >&2 || true
  done
}
trap cleanup EXIT

if [ -z "${FAILCAT_TEST_DATABASE_URL:-}" ]; then
  if ! bash "$scripts/postgres.sh" status >/dev/null 2>&1; then started+=(postgres); fi
  FAILCAT_TEST_DATABASE_URL=$(bash "$scripts/postgres.sh" start | tail -n 1)
fi
if [ -z "${FAILCAT_TEST_OPENSEARCH_URL:-}" ]; then
  if ! bash "$scripts/opensearch.sh" status >/dev/null 2>&1; then started+=(opensearch); fi
  FAILCAT_TEST_OPENSEARCH_URL=$(bash "$scripts/opensearch.sh" start | tail -n 1)
fi
if [ -z "${FAILCAT_CHROMIUM:-}" ]; then
  FAILCAT_CHROMIUM=$(bash "$scripts/chromium.sh" ensure | tail -n 1)
fi
export FAILCAT_TEST_DATABASE_URL FAILCAT_TEST_OPENSEARCH_URL FAILCAT_CHROMIUM
echo "test.sh: Postgres at $FAILCAT_TEST_DATABASE_URL, OpenSearch at $FAILCAT_TEST_OPENSEARCH_URL, Chromium at $FAILCAT_CHROMIUM" >&2

.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
