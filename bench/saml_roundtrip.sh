#!/usr/bin/env bash
# Full SAML sign-in round trips per second (issue 5's benchmark, second figure), and the SAML
# crate's ACS validations per second (first figure) for reference.
#
#   bench/saml_roundtrip.sh    # RUNS=3 runs of at most FLOWS=1500 flows or 15 s, CONCURRENCY=4
#
# Needs python3, curl, openssl, xmlsec1 (Debian packages openssl, xmlsec1) and cargo.
#
# 1. ACS validations/s: `cargo run --release -p portcullis-saml --example acs_bench -- 3` (the
#    crate alone: base64, pre-parse, policy, libxmlsec1 verification, checks; one thread and all
#    cores) — ACS_BENCH=0 skips it.
# 2. Round trip: a release server on SQLite (fresh data directory), one environment with a web
#    application (client_secret_basic), an organization owning acme.test and its SAML connection,
#    whose IdP is made here: an RSA-2048 key and certificate from `openssl req`, metadata written
#    as text and imported through the admin API. The connection enables IdP-initiated login for
#    the application: the AuthnRequest's ID is only known after the redirect, so the Responses are
#    unsolicited, each signed up front by xmlsec1 with a unique Assertion ID
#    (bench/saml_load.py presign). Then RUNS runs of bench/saml_load.py: authorize → login page →
#    email (303 to the IdP with a signed AuthnRequest) → ACS (a pre-signed Response: 303 with a
#    code) → token, a fresh cookie jar per flow, CONCURRENCY keep-alive connections.
#    Reports flows/s, latency and per-step medians (medians over the runs), and flows per second
#    of server CPU (the load generator shares the two cores with the server).
# Everything listens on 127.0.0.1 only; the server is stopped on exit. Prints a JSON summary and
# writes target/bench/saml.json.

source "$(dirname "$0")/lib.sh"
bench_init

RUNS="${RUNS:-3}"
FLOWS="${FLOWS:-1500}"
CONCURRENCY="${CONCURRENCY:-4}"
MAX_SECONDS="${MAX_SECONDS:-15}"
for tool in openssl xmlsec1 python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y openssl xmlsec1 python3 curl)"
done

build_release
COND="$(conditions)"
log "$(echo "$COND" | tr '\n' ' ')"
mk_tmp SCRATCH

# --- 1. the crate's ACS validations per second ---------------------------------------------------
if [ "${ACS_BENCH:-1}" = 1 ]; then
    log "ACS validations/s: cargo run --release -p portcullis-saml --example acs_bench -- 3"
    (cd "$ROOT" && cargo run -q --release -p portcullis-saml --example acs_bench -- 3) \
        | tee "$SCRATCH/acs_bench.txt" >&2 || die "acs_bench failed"
fi

# --- 2. the round trip ---------------------------------------------------------------------------
mk_tmp DATA
PORT="$(free_port)"
start_server "$DATA/data" "$PORT"
ADMIN_KEY="$(admin_key "$DATA/data")"
log "server on $SERVER_URL (pid $SERVER_PID), SQLite in $DATA/data"

ENV=bench-saml
REDIRECT="http://127.0.0.1:9/cb"
EMAIL="alice@acme.test"
IDP_ENTITY="https://idp.acme.test/saml"
IDP_SSO="https://idp.acme.test/sso/redirect"

fail() { die "$1: HTTP $(api_status): $2"; }
out="$(api POST /admin/v1/environments "{\"slug\":\"$ENV\",\"signing_alg\":\"ES256\"}")" || fail "creating $ENV" "$out"
out="$(api POST "/admin/v1/environments/$ENV/clients" \
    "{\"name\":\"bench web\",\"redirect_uris\":[\"$REDIRECT\"],\"grant_types\":[\"authorization_code\"],\"scopes\":[\"openid\",\"email\",\"profile\"]}")" \
    || fail "creating the client" "$out"
CLIENT_ID="$(echo "$out" | json_get '["id"]')"
CLIENT_SECRET="$(echo "$out" | json_get '["client_secret"]')"
out="$(api POST "/admin/v1/environments/$ENV/organizations" '{"name":"Acme","domains":["acme.test"]}')" \
    || fail "creating the organization" "$out"
ORG="$(echo "$out" | json_get '["id"]')"
out="$(api POST "/admin/v1/environments/$ENV/organizations/$ORG/connections" \
    "{\"type\":\"saml\",\"name\":\"Acme IdP\",\"saml\":{\"allow_idp_initiated\":true,\"idp_initiated\":{\"client_id\":\"$CLIENT_ID\",\"redirect_uri\":\"$REDIRECT\"}}}")" \
    || fail "creating the connection" "$out"
CONN="$(echo "$out" | json_get '["id"]')"

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=idp.acme.test" \
    -keyout "$SCRATCH/idp.key.pem" -out "$SCRATCH/idp.crt.pem" 2>/dev/null || die "openssl req failed"
CERT_B64="$(openssl x509 -in "$SCRATCH/idp.crt.pem" -outform der | base64 -w0)"
cat >"$SCRATCH/idp-metadata.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="$IDP_ENTITY">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>$CERT_B64</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="$IDP_SSO"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
EOF
code="$(curl -sS -o "$SCRATCH/put.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN_KEY" \
    -H 'Content-Type: application/samlmetadata+xml' --data-binary "@$SCRATCH/idp-metadata.xml" \
    "$SERVER_URL/admin/v1/environments/$ENV/connections/$CONN/saml-metadata")"
[ "$code" = 200 ] || die "importing the IdP metadata: HTTP $code: $(cat "$SCRATCH/put.json")"
out="$(api POST "/admin/v1/environments/$ENV/connections/$CONN/activate" '{}')" || fail "activating" "$out"

# The SP as its metadata describes it (what the IdP administrator would import).
curl -sS -o "$SCRATCH/sp-metadata.xml" "$SERVER_URL/e/$ENV/sso/saml/$CONN/metadata"
python3 - "$SCRATCH/sp-metadata.xml" "$SCRATCH/settings.json" <<EOF2 || die "reading the SP metadata"
import json, re, sys
md = open(sys.argv[1], encoding="utf-8").read()
json.dump({
    "url": "$SERVER_URL", "env": "$ENV", "client_id": "$CLIENT_ID", "client_secret": "$CLIENT_SECRET",
    "redirect_uri": "$REDIRECT", "email": "$EMAIL",
    "sp_entity_id": re.search(r'entityID="([^"]+)"', md).group(1),
    "acs_url": re.search(r'<md:AssertionConsumerService [^>]*Location="([^"]+)"', md).group(1),
    "idp_entity_id": "$IDP_ENTITY", "idp_sso_url": "$IDP_SSO",
    "idp_key": "$SCRATCH/idp.key.pem", "idp_cert": "$SCRATCH/idp.crt.pem",
}, open(sys.argv[2], "w"))
EOF2

log "pre-signing $((FLOWS * RUNS + 20)) Responses with xmlsec1"
python3 "$BENCH_DIR/saml_load.py" presign "$SCRATCH/settings.json" "$((FLOWS * RUNS + 20))" \
    "$SCRATCH/responses.txt" >"$SCRATCH/presign.json" || die "pre-signing failed"
cat "$SCRATCH/presign.json" >&2

server_cpu() {
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$SERVER_PID/stat"
}

# Warm-up: 20 flows on the first pre-signed Responses.
sed -n 1,20p "$SCRATCH/responses.txt" >"$SCRATCH/warm.txt"
python3 "$BENCH_DIR/saml_load.py" run "$SCRATCH/settings.json" "$SCRATCH/warm.txt" 20 "$CONCURRENCY" \
    >"$SCRATCH/warm.json" || die "warm-up failed: $(cat "$SCRATCH/warm.json")"
for i in $(seq "$RUNS"); do
    sed -n "$((21 + (i - 1) * FLOWS)),$((20 + i * FLOWS))p" "$SCRATCH/responses.txt" >"$SCRATCH/batch-$i.txt"
    before="$(server_cpu)"
    python3 "$BENCH_DIR/saml_load.py" run "$SCRATCH/settings.json" "$SCRATCH/batch-$i.txt" \
        "$FLOWS" "$CONCURRENCY" "$MAX_SECONDS" >"$SCRATCH/run-$i.json" \
        || log "run $i had errors: $(cat "$SCRATCH/run-$i.json")"
    after="$(server_cpu)"
    echo "{\"cpu_seconds\": $(python3 -c "print(round($after - $before, 3))")}" >"$SCRATCH/cpu-$i.json"
    log "run $i: $(cat "$SCRATCH/run-$i.json") server CPU $(cat "$SCRATCH/cpu-$i.json")"
done

python3 - "$SCRATCH" "$RUNS" "$COND" "$OUT_DIR/saml.json" <<'EOF3'
import json, os, re, statistics, sys
scratch, runs, cond, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rs = [json.load(open(f"{scratch}/run-{i}.json")) for i in range(1, runs + 1)]
cpu = [json.load(open(f"{scratch}/cpu-{i}.json"))["cpu_seconds"] for i in range(1, runs + 1)]
med = lambda xs: statistics.median(xs)
acs = None
p = f"{scratch}/acs_bench.txt"
if os.path.exists(p):
    acs = open(p).read()
summary = {
    "conditions": cond,
    "runs": rs,
    "per_second_median": med([r["per_second"] for r in rs]),
    "p50_ms_median": med([r["p50_ms"] for r in rs]),
    "p99_ms_median": med([r["p99_ms"] for r in rs]),
    "step_median_ms": {k: med([r["step_median_ms"][k] for r in rs]) for k in rs[0]["step_median_ms"]},
    "errors": sum(r["errors"] for r in rs),
    "server_cpu_seconds": cpu,
    "flows_per_server_cpu_second": round(med([r["flows"] / c for r, c in zip(rs, cpu) if c > 0]), 1),
    "acs_bench": acs,
}
json.dump(summary, open(out, "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF3
