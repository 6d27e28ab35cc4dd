# Shared by postgres.sh and opensearch.sh: logging, the unprivileged user, apt, ports, the lock,
# status/url and the command dispatch. The sourcing script sets PROG, INFRA_DIR, LOCK,
# LOCK_WAIT and URL_FILE and defines running, do_start and do_stop.

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

RUN_USER="${FAILCAT_INFRA_USER:-failcat}"

# Run a command as the unprivileged user (or as ourselves when not root), from "/" (a
# directory that user can read). fd 9 (our flock) is closed so the long-lived server does not
# inherit the lock.
as_user() {
  if is_root; then
    (cd / && runuser -u "$RUN_USER" -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

ensure_user() {
  is_root || return 0
  if ! id -u "$RUN_USER" >/dev/null 2>&1; then
    log "creating system user ${RUN_USER}"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$RUN_USER" >/dev/null 2>&1 \
      || id -u "$RUN_USER" >/dev/null 2>&1 \
      || die "could not create system user ${RUN_USER} (useradd failed)"
  fi
}

# apt_install WHAT PACKAGE...: install Debian packages (root only), updating the lists once.
apt_install() {
  is_root || die "$1 is missing and we are not root to apt-get install ${*:2}"
  log "installing ${*:2} via apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq >&2 || die "apt-get update failed (needed for ${*:2})"
    APT_UPDATED=1
  fi
  apt-get install -y -qq "${@:2}" >&2 || die "apt-get install ${*:2} failed"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    local p
    for _ in $(seq 1 50); do
      p="$(shuf -i 20000-60000 -n 1)"
      if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then echo "$p"; return 0; fi
    done
    die "could not find a free TCP port"
  fi
}

# start and stop of one service never overlap (two `start`s share one server).
with_lock() {
  mkdir -p "$INFRA_DIR" || die "cannot create ${INFRA_DIR}"
  exec 9>"$LOCK" || die "cannot open lock file ${LOCK}"
  flock -w "$LOCK_WAIT" 9 || die "timed out waiting for lock ${LOCK} (another ${PROG} running?)"
  "$@"
}

do_status() {
  if running; then
    log "running: $(cat "$URL_FILE")"
    return 0
  fi
  log "not running"
  return 1
}

do_url() {
  running || die "not running (run: $0 start)"
  cat "$URL_FILE"
}

dispatch() {
  case "${1:-}" in
    start) with_lock do_start ;;
    stop) with_lock do_stop ;;
    status) do_status ;;
    url) do_url ;;
    *) echo "usage: $PROG start|stop|status|url" >&2; exit 2 ;;
  esac
}
