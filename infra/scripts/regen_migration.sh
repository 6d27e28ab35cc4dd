#!/usr/bin/env bash
# Regenerate the initial schema migration (0001) from the models. Pre-release the schema is
# one migration; later migrations (0002 reference data, ...) are kept and set aside meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
versions=infra/migrations/versions
tmp=$(mktemp -d)
restore() { mv "$tmp"/later/*.py "$versions"/ 2>/dev/null || true; rm -rf "$tmp"; }
trap restore EXIT
mkdir -p "$tmp/later"
for f in "$versions"/*.py; do
  case "$(basename "$f")" in 0001_*) rm -f "$f" ;; *) mv "$f" "$tmp/later/" ;; esac
done
.venv/bin/python - "$tmp/empty.db" <<'PY'
import sys
from alembic import command
from shared.migrate import alembic_config
cfg = alembic_config(f"sqlite+aiosqlite:///{sys.argv[1]}")
command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
PY
.venv/bin/ruff format -q "$versions"
.venv/bin/ruff check -q --fix "$versions" || true
