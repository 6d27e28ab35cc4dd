# Helpers the walkthroughs source: a token for a client, and GraphQL calls that fail loudly.
#   token ID SECRET [SCOPES]  -> prints an access token (client credentials grant)
#   gql QUERY [VARIABLES_JSON] -> prints the answer's `data` as JSON; exits 1 on errors
# Uses the bootstrap admin client of `make run` ($FAILCAT_DATA_DIR/bootstrap-client.json)
# unless TOKEN is already set.

: "${FAILCAT:=http://127.0.0.1:8000}"

token() {
  curl -sf -u "$1:$2" -d grant_type=client_credentials ${3:+-d "scope=$3"} \
    "$FAILCAT/oauth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

if [ -z "${TOKEN:-}" ]; then
  _creds="${FAILCAT_DATA_DIR:-.failcat}/bootstrap-client.json"
  TOKEN=$(token "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$_creds")" \
                "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$_creds")")
  export TOKEN
fi

gql() {
  python3 - "$1" "${2:-{\}}" <<'PY'
import json, os, sys, urllib.request

body = json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}).encode()
req = urllib.request.Request(
    os.environ["FAILCAT"] + "/graphql",
    data=body,
    headers={"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"},
)
answer = json.load(urllib.request.urlopen(req))
if answer.get("errors"):
    print(json.dumps(answer["errors"], indent=2), file=sys.stderr)
    sys.exit(1)
print(json.dumps(answer["data"], indent=2))
PY
}
