#!/usr/bin/env python3
"""Full SAML sign-in round trips per second (issue 5's round-trip benchmark).

usage: saml_load.py presign SETTINGS_JSON COUNT OUT_JSONL
       saml_load.py run     SETTINGS_JSON RESPONSES_JSONL FLOWS CONCURRENCY [MAX_SECONDS]

SETTINGS_JSON (written by bench/saml_roundtrip.sh) names the server URL, the environment, the
client (ID, secret, redirect URI), the connection's ACS URL and SP entity ID, the IdP's entity ID,
SSO URL, key and certificate files, and the user's email.

`presign` writes COUNT Responses, one base64 `SAMLResponse` a line, each signed up front by the
`xmlsec1` CLI (RSA-SHA256, exclusive c14n, the Assertion signed, as Entra ID and ADFS send them)
with a unique Response and Assertion ID, valid for 30 minutes. They are unsolicited (no
InResponseTo): the request ID of an SP-initiated login is only known after the redirect, so the
bench connection enables IdP-initiated login and each Response starts a fresh server-side flow.

`run` starts CONCURRENCY threads, each with one keep-alive HTTP/1.1 connection, repeating until
FLOWS flows were started or MAX_SECONDS (default 15) passed, with a fresh cookie jar per flow:

  1. GET  /e/ENV/oauth2/authorize?…PKCE S256…  → 303 to /e/ENV/login?req=ID, Set-Cookie pc_flow
  2. GET  /e/ENV/login?req=ID                   → 200 email form
  3. POST /e/ENV/login            req, email    → 303 to the IdP with a signed AuthnRequest
  4. POST /e/ENV/sso/saml/CONN/acs  SAMLResponse (the next pre-signed one)  → 303 with a code
  5. POST /e/ENV/oauth2/token     authorization_code (client_secret_basic)  → 200 with ID token

Prints one JSON object: completed flows/s, flow latency p50/p99 and the median of each step.
A flow with any unexpected answer counts as an error.
"""

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs, quote, urlencode, urlsplit

STEPS = ["authorize", "login_page", "email_to_authn_request", "acs", "token"]
C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[i]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def response_xml(s, n):
    """One unsolicited Response with a signature template on its Assertion."""
    rid = f"_resp_{n}_{os.urandom(8).hex()}"
    aid = f"_assert_{n}_{os.urandom(8).hex()}"
    now = int(time.time())
    email = s["email"]
    attrs = "".join(
        f'<saml:Attribute Name="{k}">'
        + "".join(f"<saml:AttributeValue>{v}</saml:AttributeValue>" for v in vs)
        + "</saml:Attribute>"
        for k, vs in [("email", [email]), ("givenName", ["Alice"]), ("sn", ["Liddell"]),
                      ("groups", ["engineering", "admins"])]
    )
    sig = (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{C14N}"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        f'<ds:Reference URI="#{aid}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        f'<ds:Transform Algorithm="{C14N}"/></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>'
        '</ds:Reference></ds:SignedInfo><ds:SignatureValue/>'
        '<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>'
    )
    return aid, (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{rid}" Version="2.0" '
        f'IssueInstant="{iso(now)}" Destination="{s["acs_url"]}">'
        f'<saml:Issuer>{s["idp_entity_id"]}</saml:Issuer>'
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        f'<saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{iso(now)}">'
        f'<saml:Issuer>{s["idp_entity_id"]}</saml:Issuer>{sig}'
        '<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">'
        f'{email}</saml:NameID>'
        '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="{iso(now + 1800)}" Recipient="{s["acs_url"]}"/>'
        '</saml:SubjectConfirmation></saml:Subject>'
        f'<saml:Conditions NotBefore="{iso(now - 60)}" NotOnOrAfter="{iso(now + 1800)}">'
        f'<saml:AudienceRestriction><saml:Audience>{s["sp_entity_id"]}</saml:Audience>'
        '</saml:AudienceRestriction></saml:Conditions>'
        f'<saml:AuthnStatement AuthnInstant="{iso(now)}" SessionIndex="{aid}">'
        '<saml:AuthnContext><saml:AuthnContextClassRef>'
        'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport'
        '</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>'
        f'<saml:AttributeStatement>{attrs}</saml:AttributeStatement>'
        '</saml:Assertion></samlp:Response>'
    )


def sign_one(s, n, tmp):
    aid, xml = response_xml(s, n)
    src = os.path.join(tmp, f"{n}.xml")
    out = os.path.join(tmp, f"{n}.signed.xml")
    with open(src, "w", encoding="utf-8") as f:
        f.write(xml)
    subprocess.run(
        ["xmlsec1", "--sign", "--privkey-pem", f'{s["idp_key"]},{s["idp_cert"]}',
         "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
         "--node-id", aid, "--output", out, src],
        check=True, capture_output=True,
    )
    with open(out, "rb") as f:
        signed = f.read()
    os.remove(src)
    os.remove(out)
    return base64.b64encode(signed).decode()


def presign(settings_path, count, out_path):
    s = json.load(open(settings_path, encoding="utf-8"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        signed = list(pool.map(lambda n: sign_one(s, n, tmp), range(count)))
    with open(out_path, "w", encoding="ascii") as f:
        for b in signed:
            f.write(b + "\n")
    print(json.dumps({"presigned": count, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


def run(settings_path, responses_path, flows, conc, max_s):
    s = json.load(open(settings_path, encoding="utf-8"))
    responses = [line.strip() for line in open(responses_path, encoding="ascii") if line.strip()]
    if len(responses) < flows:
        raise SystemExit(f"{len(responses)} pre-signed responses for {flows} flows")
    u = urlsplit(s["url"])
    base = f'/e/{s["env"]}'
    acs_path = urlsplit(s["acs_url"]).path
    basic = "Basic " + base64.b64encode(f'{s["client_id"]}:{s["client_secret"]}'.encode()).decode()
    lock = threading.Lock()
    started = [0]
    done_lat, errors, step_lat = [], [0], {k: [] for k in STEPS}
    first_error = []
    t0 = time.perf_counter()

    def one_flow(conn, saml_response):
        steps = {}

        def call(name, method, path, body=None, headers=None):
            t = time.perf_counter()
            h = dict(headers or {})
            if body is not None:
                h["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            steps[name] = (time.perf_counter() - t) * 1000
            return r, data

        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        q = urlencode({
            "response_type": "code", "client_id": s["client_id"], "redirect_uri": s["redirect_uri"],
            "scope": "openid email profile", "state": os.urandom(9).hex(),
            "code_challenge": challenge, "code_challenge_method": "S256",
        }, quote_via=quote)
        r, _ = call("authorize", "GET", f"{base}/oauth2/authorize?{q}")
        if r.status != 303:
            raise RuntimeError(f"authorize answered {r.status}")
        loc = urlsplit(r.getheader("Location"))
        req_id = parse_qs(loc.query)["req"][0]
        cookie = None
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("pc_flow="):
                cookie = v.split(";", 1)[0]
        if not cookie:
            raise RuntimeError("authorize set no pc_flow cookie")
        ck = {"Cookie": cookie}
        r, _ = call("login_page", "GET", f"{loc.path}?{loc.query}", headers=ck)
        if r.status != 200:
            raise RuntimeError(f"login page answered {r.status}")
        r, _ = call("email_to_authn_request", "POST", f"{base}/login",
                    body=urlencode({"req": req_id, "email": s["email"]}), headers=ck)
        to = r.getheader("Location") or ""
        if r.status != 303 or not to.startswith(s["idp_sso_url"] + "?SAMLRequest=") or "&Signature=" not in to:
            raise RuntimeError(f"email step answered {r.status} {to[:120]}")
        r, _ = call("acs", "POST", acs_path, body=urlencode({"SAMLResponse": saml_response}))
        back = r.getheader("Location") or ""
        if r.status != 303 or not back.startswith(s["redirect_uri"] + "?"):
            raise RuntimeError(f"ACS answered {r.status} {back[:120]}")
        code = parse_qs(urlsplit(back).query)["code"][0]
        r, data = call("token", "POST", f"{base}/oauth2/token", body=urlencode({
            "grant_type": "authorization_code", "redirect_uri": s["redirect_uri"], "code": code,
        }), headers={"Authorization": basic})
        if r.status != 200:
            raise RuntimeError(f"token answered {r.status}: {data[:200]!r}")
        tok = json.loads(data)
        if "id_token" not in tok:
            raise RuntimeError("token answer lacks an id_token")
        return steps

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while True:
            with lock:
                if started[0] >= flows or time.perf_counter() - t0 > max_s:
                    break
                saml_response = responses[started[0]]
                started[0] += 1
            t = time.perf_counter()
            try:
                steps = one_flow(conn, saml_response)
            except Exception as e:  # noqa: BLE001 — any failure is counted and reported
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                with lock:
                    errors[0] += 1
                    if not first_error:
                        first_error.append(repr(e))
                continue
            ms = (time.perf_counter() - t) * 1000
            with lock:
                done_lat.append(ms)
                for k, v in steps.items():
                    step_lat[k].append(v)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(json.dumps({
        "flows": len(done_lat),
        "concurrency": conc,
        "errors": errors[0],
        "first_error": first_error[0] if first_error else None,
        "seconds": round(wall, 3),
        "per_second": round(len(done_lat) / wall, 2),
        "p50_ms": round(pct(done_lat, 50), 1),
        "p99_ms": round(pct(done_lat, 99), 1),
        "step_median_ms": {k: round(pct(v, 50), 2) for k, v in step_lat.items()},
    }))
    return 0 if errors[0] == 0 else 1


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "presign":
        return presign(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    if len(sys.argv) >= 6 and sys.argv[1] == "run":
        max_s = float(sys.argv[6]) if len(sys.argv) > 6 else 15.0
        return run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), max_s)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
