#!/usr/bin/env python3
"""A declarative configuration with N organizations, each with a domain and one connection.

    config_gen.py N oidc|saml > config.toml

OIDC connections pin one generated EC P-256 key (public JWK) and carry a client secret; SAML
connections name a manual IdP with one self-signed certificate (made once with openssl).
"""
import base64, json, subprocess, sys, tempfile, os

n, kind = int(sys.argv[1]), sys.argv[2]
out = ["version = 1", ""]
if kind == "saml":
    d = tempfile.mkdtemp()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                    "-subj", "/CN=bench-idp", "-keyout", os.path.join(d, "k.pem"),
                    "-out", os.path.join(d, "c.pem")], check=True, capture_output=True)
    pem = open(os.path.join(d, "c.pem")).read()
# A fixed public P-256 point (the RFC 7517 appendix A.1 example key).
jwk = {"kty": "EC", "crv": "P-256", "kid": "idp-1",
       "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}
for i in range(n):
    out += ["[[organizations]]", f'name = "Org {i:05d}"', f'domains = ["org{i:05d}.test"]', "",
            "[[organizations.connections]]", 'name = "sso"', f'type = "{kind}"']
    if kind == "oidc":
        out += [f'client_secret = "secret-{i:05d}"', "[organizations.connections.oidc]",
                f'issuer = "https://idp{i:05d}.test"', 'client_id = "portcullis"',
                f'authorization_endpoint = "https://idp{i:05d}.test/authorize"',
                f'token_endpoint = "https://idp{i:05d}.test/token"',
                "jwks = { keys = [" + ", ".join(
                    "{ " + ", ".join(f'{k} = "{v}"' for k, v in jwk.items()) + " }" for _ in [0]) + "] }"]
    else:
        out += ["[organizations.connections.saml.idp]", f'entity_id = "https://idp{i:05d}.test/saml"',
                f'sso_url = "https://idp{i:05d}.test/sso"', 'certificates_pem = """', pem.strip(), '"""']
    out.append("")
print("\n".join(out))
