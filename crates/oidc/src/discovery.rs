//! Discovery documents: OpenID Provider metadata (OIDC Discovery §3) and OAuth authorization
//! server metadata (RFC 8414). They advertise exactly what is implemented.

use portcullis_core::model::Environment;
use serde_json::{Value, json};

pub const SCOPES: &[&str] = &["openid", "email", "profile", "offline_access"];

pub fn metadata(env: &Environment, oidc: bool) -> Value {
    let i = &env.issuer;
    let mut m = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/oauth2/authorize"),
        "token_endpoint": format!("{i}/oauth2/token"),
        "jwks_uri": format!("{i}/jwks.json"),
        "introspection_endpoint": format!("{i}/oauth2/introspect"),
        "revocation_endpoint": format!("{i}/oauth2/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "authorization_response_iss_parameter_supported": true,
    });
    if oidc {
        m["userinfo_endpoint"] = json!(format!("{i}/oauth2/userinfo"));
        m["end_session_endpoint"] = json!(format!("{i}/logout"));
        m["subject_types_supported"] = json!(["public"]);
        m["id_token_signing_alg_values_supported"] = json!([env.signing_alg.as_str()]);
        m["claims_supported"] = json!([
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "amr",
            "azp",
            "email",
            "email_verified",
            "name",
            "given_name",
            "family_name",
            "org_id"
        ]);
        m["prompt_values_supported"] = json!(["none", "login"]);
        m["claims_parameter_supported"] = json!(false);
        m["request_parameter_supported"] = json!(false);
        m["request_uri_parameter_supported"] = json!(false);
    }
    m
}
