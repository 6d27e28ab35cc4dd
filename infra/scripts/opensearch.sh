#!/usr/bin/env bash
# Throwaway single-node OpenSearch for tests (integ-test zip from Maven Central, plain http,
# loopback only, unprivileged user).
#
# Usage: infra/scripts/opensearch.sh start|stop|status|url
#
#   start   fetch (cached), unpack, start and wait for yellow (idempotent); prints the URL
#           http://127.0.0.1:PORT as the LAST stdout line
#   stop    stop the node and delete its state dir (idempotent)
#   status  exit 0 if the node answers on its URL, else 1
#   url     print the URL of the running node
#
# Version: infra/opensearch.version — line 1 is the version (3.x, needs Java >= 21);
# a line "fallback=2.19.x" is used when no Java >= 21 JDK is found (runs on Java 11..23).
#
# Environment:
#   FAILCAT_INFRA_DIR              parent of the state dir (default /tmp/failcat-infra)
#   FAILCAT_CACHE_DIR              download cache parent (default $HOME/.cache/failcat)
#   FAILCAT_INFRA_USER             unprivileged user to run as when root (default failcat)
#   FAILCAT_OPENSEARCH_VERSION     override the version from infra/opensearch.version
#   FAILCAT_OPENSEARCH_JAVA_HOME   force a JDK (else the newest suitable one is discovered)
#   FAILCAT_OPENSEARCH_HEAP        heap size (default 1g)
#   FAILCAT_OPENSEARCH_TIMEOUT     seconds to wait for yellow (default 120)
set -euo pipefail

PROG="opensearch.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION_FILE="${SCRIPT_DIR}/../opensearch.version"
INFRA_DIR="${FAILCAT_INFRA_DIR:-/tmp/failcat-infra}"
STATE="${INFRA_DIR}/opensearch"
LOCK="${INFRA_DIR}/.opensearch.lock"
CACHE="${FAILCAT_CACHE_DIR:-${HOME:-/root}/.cache/failcat}/opensearch"
PID_FILE="${STATE}/opensearch.pid"
URL_FILE="${STATE}/url"
STARTUP_LOG="${STATE}/startup.log"
HEAP="${FAILCAT_OPENSEARCH_HEAP:-1g}"
TIMEOUT="${FAILCAT_OPENSEARCH_TIMEOUT:-120}"
CLUSTER_NAME="failcat-test"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

LOCK_WAIT=600
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools() {
  command -v curl >/dev/null 2>&1 || apt_install curl curl
  command -v unzip >/dev/null 2>&1 || apt_install unzip unzip
  command -v mvn >/dev/null 2>&1 || apt_install mvn maven
}

# Version from the pin file: VERSION (primary) and FALLBACK_VERSION.
read_versions() {
  [ -f "$VERSION_FILE" ] || die "version pin file not found: ${VERSION_FILE}"
  PRIMARY_VERSION="$(grep -vE '^\s*(#|$)' "$VERSION_FILE" | grep -v '=' | head -n 1 | tr -d '[:space:]' || true)"
  FALLBACK_VERSION="$(sed -n 's/^\s*fallback\s*=\s*//p' "$VERSION_FILE" | head -n 1 | tr -d '[:space:]' || true)"
  [ -n "$PRIMARY_VERSION" ] || die "no version on the first line of ${VERSION_FILE}"
}

# Major version of the JDK/JRE at $1 (0 if unknown).
java_major() {
  local home="$1" v=""
  [ -x "${home}/bin/java" ] || { echo 0; return; }
  if [ -f "${home}/release" ]; then
    v="$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "${home}/release" | head -n 1)"
  fi
  if [ -z "$v" ]; then
    v="$("${home}/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  fi
  v="${v#1.}"
  v="${v%%[.+-]*}"
  case "$v" in '' | *[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

# Prints the home of the newest JDK with MIN <= major <= MAX (empty if none).
find_java() {
  local min="$1" max="$2" best="" best_major=0 home major real
  local seen=" "
  for home in "${JAVA_HOME:-}" /usr/lib/jvm/*; do
    if [ -z "$home" ] || [ ! -d "$home" ]; then continue; fi
    real="$(readlink -f "$home")"
    case "$seen" in *" ${real} "*) continue ;; esac
    seen="${seen}${real} "
    major="$(java_major "$real")"
    if [ "$major" -ge "$min" ] && [ "$major" -le "$max" ] && [ "$major" -gt "$best_major" ]; then
      best="$real"
      best_major="$major"
    fi
  done
  printf '%s' "$best"
}

# Sets VERSION and OS_JAVA_HOME.
choose_version_and_java() {
  read_versions
  if [ -n "${FAILCAT_OPENSEARCH_VERSION:-}" ]; then
    VERSION="$FAILCAT_OPENSEARCH_VERSION"
  else
    VERSION="$PRIMARY_VERSION"
  fi
  local min=21 max=999
  case "$VERSION" in 1.* | 2.*) min=11; max=23 ;; esac

  if [ -n "${FAILCAT_OPENSEARCH_JAVA_HOME:-}" ]; then
    OS_JAVA_HOME="$FAILCAT_OPENSEARCH_JAVA_HOME"
    [ -x "${OS_JAVA_HOME}/bin/java" ] || die "FAILCAT_OPENSEARCH_JAVA_HOME has no bin/java: ${OS_JAVA_HOME}"
    return 0
  fi
  OS_JAVA_HOME="$(find_java "$min" "$max")"
  if [ -z "$OS_JAVA_HOME" ] && [ -z "${FAILCAT_OPENSEARCH_VERSION:-}" ] && [ "$min" -ge 21 ]; then
    [ -n "$FALLBACK_VERSION" ] || die "no Java >= 21 JDK in /usr/lib/jvm for OpenSearch ${VERSION} and no fallback= line in ${VERSION_FILE}"
    log "no Java >= 21 found; falling back to OpenSearch ${FALLBACK_VERSION}"
    VERSION="$FALLBACK_VERSION"
    min=11
    max=23
    OS_JAVA_HOME="$(find_java "$min" "$max")"
  fi
  if [ -z "$OS_JAVA_HOME" ] && [ "$min" -le 17 ]; then
    apt_install "Java 17" openjdk-17-jre-headless
    OS_JAVA_HOME="$(find_java "$min" "$max")"
  fi
  [ -n "$OS_JAVA_HOME" ] || die "no suitable JDK (Java ${min}..${max}) for OpenSearch ${VERSION} in /usr/lib/jvm"
}


# Downloads the zip into the cache (once). Sets ZIP.
fetch_zip() {
  ZIP="${CACHE}/opensearch-${VERSION}.zip"
  if [ -s "$ZIP" ] && unzip -l "$ZIP" >/dev/null 2>&1; then
    log "using cached ${ZIP}"
    return 0
  fi
  mkdir -p "$CACHE" || die "cannot create cache dir ${CACHE}"
  local tmp
  tmp="$(mktemp -d "${CACHE}/.download.XXXXXX")"
  log "downloading OpenSearch ${VERSION} from Maven Central (~160 MB)"
  if ! mvn -q -B -Dstyle.color=never "${DEP_PLUGIN}:copy" \
      "-Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:${VERSION}:zip" \
      "-DoutputDirectory=${tmp}" >"${tmp}/mvn.log" 2>&1; then
    local why
    why="$(sed 's/\x1b\[[0-9;]*m//g' "${tmp}/mvn.log" | grep -m1 -E '\[ERROR\]' | sed 's/^.*\[ERROR\] *//' || true)"
    rm -rf "$tmp"
    die "download of OpenSearch ${VERSION} via mvn failed: ${why:-see mvn output}"
  fi
  [ -s "${tmp}/opensearch-${VERSION}.zip" ] || { rm -rf "$tmp"; die "mvn reported success but opensearch-${VERSION}.zip is missing"; }
  unzip -l "${tmp}/opensearch-${VERSION}.zip" >/dev/null 2>&1 || { rm -rf "$tmp"; die "downloaded opensearch-${VERSION}.zip is corrupt"; }
  mv -f "${tmp}/opensearch-${VERSION}.zip" "$ZIP"
  rm -rf "$tmp"
}

read_pid() { if [ -f "$PID_FILE" ]; then tr -dc '0-9' <"$PID_FILE" || true; fi; }

# PIDs of any java process running from our state dir (covers a missing pidfile).
state_pids() { pgrep -f -- "-Dopensearch.path.home=${STATE}/" 2>/dev/null || true; }

responding() {
  [ -f "$URL_FILE" ] || return 1
  curl -fsS --max-time 5 "$(cat "$URL_FILE")/_cluster/health" >/dev/null 2>&1
}

running() {
  local pid
  pid="$(read_pid)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && responding
}

kill_node() {
  local pids pid
  pids="$(read_pid) $(state_pids)"
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 120); do
    local alive=""
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || return 0
    sleep 0.5
  done
  log "node did not exit after SIGTERM within 60s; sending SIGKILL"
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  sleep 1
}

# Best single line explaining a failed start.
failure_reason() {
  local f line
  for f in "$STARTUP_LOG" "${STATE}/logs/${CLUSTER_NAME}.log"; do
    [ -f "$f" ] || continue
    line="$(grep -m1 -E 'ERROR|FATAL|Exception|[Ee]rror:|UnsupportedClassVersion|requires Java' "$f" || true)"
    if [ -n "$line" ]; then printf '%s' "$line" | cut -c1-300; return; fi
  done
  printf 'no error in logs'
}

do_start() {
  ensure_user

  if running; then
    log "already running"
    cat "$URL_FILE"
    return 0
  fi
  if [ -e "$STATE" ]; then
    log "removing stale state in ${STATE}"
    kill_node
    rm -rf "$STATE" || die "could not remove ${STATE}"
  fi

  ensure_tools
  choose_version_and_java
  log "OpenSearch ${VERSION} with Java $(java_major "$OS_JAVA_HOME") (${OS_JAVA_HOME})"
  fetch_zip

  mkdir -p "$STATE"
  chmod 755 "$INFRA_DIR" 2>/dev/null || true
  log "unpacking into ${STATE}"
  unzip -q "$ZIP" -d "$STATE" || die "unzip of ${ZIP} failed"
  local home="${STATE}/opensearch-${VERSION}"
  [ -x "${home}/bin/opensearch" ] || die "unexpected zip layout: ${home}/bin/opensearch missing"
  mkdir -p "${STATE}/data" "${STATE}/logs" "${STATE}/tmp"

  local http_port transport_port
  http_port="$(free_port)"
  transport_port="$(free_port)"
  while [ "$transport_port" = "$http_port" ]; do transport_port="$(free_port)"; done

  cat >"${home}/config/opensearch.yml" <<EOF
# failcat test node (written by infra/scripts/opensearch.sh)
cluster.name: ${CLUSTER_NAME}
node.name: failcat-node
discovery.type: single-node
network.host: 127.0.0.1
http.port: ${http_port}
transport.port: ${transport_port}
path.data: ${STATE}/data
path.logs: ${STATE}/logs
cluster.routing.allocation.disk.threshold_enabled: false
EOF

  if is_root; then
    chown -R "$RUN_USER:" "$STATE" || die "could not chown ${STATE} to ${RUN_USER}"
    as_user test -w "${STATE}/data" \
      || die "user ${RUN_USER} cannot write ${STATE} (a parent dir is not traversable; set FAILCAT_INFRA_DIR elsewhere)"
  fi

  local url="http://127.0.0.1:${http_port}"
  log "starting on ${url} (transport ${transport_port}, heap ${HEAP})"
  local t0=$SECONDS
  if ! as_user env JAVA_HOME="$OS_JAVA_HOME" OPENSEARCH_JAVA_HOME="$OS_JAVA_HOME" \
      OPENSEARCH_JAVA_OPTS="-Xms${HEAP} -Xmx${HEAP}" OPENSEARCH_TMPDIR="${STATE}/tmp" \
      "${home}/bin/opensearch" -d -p "$PID_FILE" >"$STARTUP_LOG" 2>&1 </dev/null; then
    die "OpenSearch ${VERSION} failed to launch: $(failure_reason) (logs: ${STATE})"
  fi

  # Wait for yellow; bail out early if the process died.
  local health="" pid=""
  while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
    pid="$(read_pid)"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "OpenSearch ${VERSION} exited during startup: $(failure_reason) (logs: ${STATE}/logs)"
    fi
    if [ -z "$pid" ] && [ $((SECONDS - t0)) -gt 15 ] && [ -z "$(state_pids)" ]; then
      die "OpenSearch ${VERSION} is not running after launch: $(failure_reason) (logs: ${STATE})"
    fi
    health="$(curl -fsS --max-time 10 "${url}/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null || true)"
    case "$health" in *'"status":"green"'* | *'"status":"yellow"'*) break ;; esac
    health=""
    sleep 1
  done
  if [ -z "$health" ]; then
    kill_node
    die "OpenSearch ${VERSION} not yellow within ${TIMEOUT}s: $(failure_reason) (logs: ${STATE}/logs)"
  fi
  printf '%s\n' "$url" >"$URL_FILE"
  chmod 644 "$URL_FILE"
  log "ready in $((SECONDS - t0))s"
  cat "$URL_FILE"
}

do_stop() {
  if [ ! -e "$STATE" ]; then
    log "not running (no state in ${STATE})"
    return 0
  fi
  log "stopping"
  kill_node
  local left
  left="$(state_pids)"
  [ -z "$left" ] || die "OpenSearch process(es) ${left//$'\n'/ } did not exit"
  rm -rf "$STATE" || die "could not remove ${STATE}"
  log "stopped and removed ${STATE}"
}



dispatch "$@"
