#!/usr/bin/env bash
# Re-fetch the GraphiQL page's browser assets from the npm registry, at pinned versions, into
# services/gateway/static/graphiql/ (shipped inside the package: the page never loads a CDN).
#
# Usage: infra/scripts/vendor_graphiql.sh [--check]
#
#   (no flag)  fetch with `npm pack` (the registry's integrity is verified by npm), copy the
#              UMD production builds, the stylesheet and each package's LICENSE, and rewrite
#              SHA256SUMS
#   --check    fetch the same versions and verify that the vendored files are byte-identical
#              (exit 1 naming the first difference)
#
# Versions: GraphiQL 3 is the last major with a UMD build, React 18 the last with UMD builds.
set -euo pipefail

GRAPHIQL_VERSION=3.9.0
REACT_VERSION=18.3.1

PROG="vendor_graphiql.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$(cd "${SCRIPT_DIR}/../.." && pwd)/services/gateway/static/graphiql"

command -v npm >/dev/null || { echo "${PROG}: npm is required (apt-get install -y npm)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
(
  cd "${work}"
  npm pack --silent "graphiql@${GRAPHIQL_VERSION}" "react@${REACT_VERSION}" \
    "react-dom@${REACT_VERSION}" >/dev/null
  for pkg in graphiql react react-dom; do
    mkdir -p "${pkg}"
    tar -xzf "${pkg}"-[0-9]*.tgz -C "${pkg}" --strip-components=1
  done
  mkdir out
  cp graphiql/graphiql.min.js graphiql/graphiql.min.css out/
  cp graphiql/LICENSE out/LICENSE.graphiql
  cp react/umd/react.production.min.js out/
  cp react/LICENSE out/LICENSE.react
  cp react-dom/umd/react-dom.production.min.js out/
  cp react-dom/LICENSE out/LICENSE.react-dom
  cat >out/VERSIONS <<EOF
graphiql ${GRAPHIQL_VERSION} (MIT)
react ${REACT_VERSION} (MIT)
react-dom ${REACT_VERSION} (MIT)
fetched from the npm registry by infra/scripts/vendor_graphiql.sh
EOF
  (cd out && sha256sum -- * | LC_ALL=C sort -k2 >SHA256SUMS)
)

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -u "${DEST}/SHA256SUMS" "${work}/out/SHA256SUMS"; then
    echo "${PROG}: the vendored assets differ from the pinned npm packages" >&2
    exit 1
  fi
  (cd "${DEST}" && sha256sum --check --quiet SHA256SUMS)
  echo "${PROG}: vendored assets match graphiql ${GRAPHIQL_VERSION}, react ${REACT_VERSION}"
  exit 0
fi

mkdir -p "${DEST}"
# Only the vendored files are replaced; the page's own script beside them stays.
(cd "${work}/out" && cp -- * "${DEST}/")
echo "${PROG}: vendored graphiql ${GRAPHIQL_VERSION}, react ${REACT_VERSION} into ${DEST}"
