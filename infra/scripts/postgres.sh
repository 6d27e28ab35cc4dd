#!/usr/bin/env bash
# Throwaway PostgreSQL for tests (Debian packages, unprivileged user, loopback only).
#
# Usage: infra/scripts/postgres.sh start|stop|status|url
#
#   start   create + start a cluster (idempotent); prints the URL as the LAST stdout line
#   stop    stop the cluster and delete its state dir (idempotent)
#   status  exit 0 if running and accepting connections, else 1
#   url     print the URL of the running cluster
#
# Environment:
#   FAILCAT_INFRA_DIR   parent of the state dir (default /tmp/failcat-infra)
#   FAILCAT_INFRA_USER  unprivileged user to run as when root (default failcat; created if missing)
#
# URL form: postgresql+asyncpg://failcat:failcat@127.0.0.1:PORT/failcat
# Auth on loopback is "trust" (any password is accepted); the role still has password "failcat".
# Durability is off (fsync/synchronous_commit/full_page_writes): test data only.
set -euo pipefail

PROG="postgres.sh"
INFRA_DIR="${FAILCAT_INFRA_DIR:-/tmp/failcat-infra}"
STATE="${INFRA_DIR}/postgres"
LOCK="${INFRA_DIR}/.postgres.lock"
DATA="${STATE}/data"
SOCK="${STATE}/run"
LOG="${STATE}/postgres.log"
URL_FILE="${STATE}/url"
PORT_FILE="${STATE}/port"
DB_NAME="failcat"
DB_USER="failcat"
DB_PASS="failcat"

LOCK_WAIT=300
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Prints the newest /usr/lib/postgresql/*/bin that has initdb (empty if none).
newest_pg_bin() {
  local f best=""
  for f in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$f" ] && best="$(printf '%s\n%s\n' "$best" "$(dirname "$f")" | sed '/^$/d' | sort -V | tail -n 1)"
  done
  printf '%s' "$best"
}

# Sets PG_BIN to the newest /usr/lib/postgresql/*/bin that has initdb; installs postgresql if needed.
find_pg_bin() {
  PG_BIN="$(newest_pg_bin)"
  if [ -z "$PG_BIN" ]; then
    apt_install "PostgreSQL (/usr/lib/postgresql/*/bin/initdb)" postgresql
    PG_BIN="$(newest_pg_bin)"
    [ -n "$PG_BIN" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
  fi
}


# 0 if the postmaster of our data dir is alive and accepts connections.
running() {
  [ -f "${DATA}/PG_VERSION" ] && [ -f "$PORT_FILE" ] || return 1
  [ -n "${PG_BIN:-}" ] || PG_BIN="$(newest_pg_bin)"
  [ -x "${PG_BIN}/pg_ctl" ] || return 1
  as_user "${PG_BIN}/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 1
  "${PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PORT_FILE")" -t 5 >/dev/null 2>&1
}

make_url() { printf 'postgresql+asyncpg://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASS" "$1" "$DB_NAME"; }

wipe_state() {
  if [ -d "$STATE" ]; then
    rm -rf "$STATE" || die "could not remove ${STATE}"
  fi
}

stop_cluster() {
  if [ -f "${DATA}/postmaster.pid" ]; then
    local pid
    pid="$(head -n 1 "${DATA}/postmaster.pid" 2>/dev/null || true)"
    if [ -n "${PG_BIN:-}" ] && [ -x "${PG_BIN}/pg_ctl" ]; then
      as_user "${PG_BIN}/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    # Fallback: signal the postmaster directly and wait for it to go.
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
      fi
    fi
  fi
}

do_start() {
  ensure_user
  find_pg_bin

  if running; then
    log "already running"
    cat "$URL_FILE"
    return 0
  fi

  # Leftovers from a crashed/killed run: throw them away (cluster is disposable).
  if [ -e "$STATE" ]; then
    log "removing stale state in ${STATE}"
    stop_cluster
    wipe_state
  fi

  mkdir -p "$SOCK"
  chmod 755 "$INFRA_DIR" 2>/dev/null || true
  if is_root; then
    chown -R "$RUN_USER:" "$STATE" || die "could not chown ${STATE} to ${RUN_USER}"
    as_user test -w "$STATE" \
      || die "user ${RUN_USER} cannot write ${STATE} (a parent dir is not traversable; set FAILCAT_INFRA_DIR elsewhere)"
  fi

  local pwfile="${STATE}/.pw"
  printf '%s\n' "$DB_PASS" >"$pwfile"
  is_root && chown "$RUN_USER:" "$pwfile"
  chmod 600 "$pwfile"
  log "initdb in ${DATA} ($(basename "$(dirname "$PG_BIN")"))"
  if ! as_user "${PG_BIN}/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=trust -E UTF8 --locale=C.UTF-8 --no-sync >"${STATE}/initdb.log" 2>&1; then
    rm -f "$pwfile"
    die "initdb failed: $(grep -m1 -iE 'error|fatal' "${STATE}/initdb.log" || tail -n 1 "${STATE}/initdb.log")"
  fi
  rm -f "$pwfile"

  local port attempt started=""
  for attempt in 1 2 3; do
    port="$(free_port)"
    cat >"${DATA}/postgresql.auto.conf" <<EOF
# failcat test cluster (written by infra/scripts/postgres.sh)
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${SOCK}'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
    is_root && chown "$RUN_USER:" "${DATA}/postgresql.auto.conf"
    log "starting postgres on 127.0.0.1:${port} (attempt ${attempt})"
    : >"$LOG"
    is_root && chown "$RUN_USER:" "$LOG"
    if as_user "${PG_BIN}/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 2>&1; then
      started=1
      break
    fi
    if grep -qiE 'could not bind|address already in use' "$LOG"; then
      log "port ${port} taken, retrying"
      continue
    fi
    break
  done
  if [ -z "$started" ]; then
    die "postgres failed to start: $(grep -m1 -E 'FATAL|PANIC|ERROR' "$LOG" || tail -n 1 "$LOG") (log: ${LOG})"
  fi
  echo "$port" >"$PORT_FILE"

  local psql=("${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$port" -U "$DB_USER" -d postgres)
  as_user "${psql[@]}" -c "ALTER ROLE ${DB_USER} WITH SUPERUSER LOGIN PASSWORD '${DB_PASS}'" >/dev/null \
    || die "could not set password for role ${DB_USER}"
  as_user "${psql[@]}" -c "CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}" >/dev/null \
    || die "could not create database ${DB_NAME}"

  make_url "$port" >"$URL_FILE"
  chmod 644 "$URL_FILE"
  running || die "postgres started but is not accepting connections on 127.0.0.1:${port} (log: ${LOG})"
  log "ready"
  cat "$URL_FILE"
}

do_stop() {
  if [ ! -e "$STATE" ]; then
    log "not running (no state in ${STATE})"
    return 0
  fi
  PG_BIN="$(newest_pg_bin)"
  log "stopping"
  stop_cluster
  if [ -f "${DATA}/postmaster.pid" ]; then
    local pid
    pid="$(head -n 1 "${DATA}/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      die "postgres (pid ${pid}) did not stop"
    fi
  fi
  wipe_state
  log "stopped and removed ${STATE}"
}



dispatch "$@"
