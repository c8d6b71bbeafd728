//! The event catalogue: every event type the product emits, what it means, and the fields of its
//! `data`. [`render`] turns it into `docs/events.md`; a test fails when that file is stale, and
//! another when an [`EventType`] has no entry here.

use portcullis_core::event::EventType;
use serde_json::{Map, Value, json};

use crate::schedule::{RetrySchedule, human_duration};

/// One field of an event's `data`: name, JSON type, meaning.
pub type Field = (&'static str, &'static str, &'static str);

pub struct Entry {
    pub kind: EventType,
    pub description: &'static str,
    pub fields: &'static [Field],
}

const ENV: &[Field] = &[
    ("id", "string", "environment ID (`env_…`)"),
    ("slug", "string", "URL name"),
    ("name", "string", "display name"),
    ("mode", "string", "`connected` or `isolated`"),
    ("issuer", "string", "issuer URL"),
    ("signing_alg", "string", "`ES256`, `EdDSA` or `RS256`"),
];
const ENV_UPDATED: &[Field] = &[
    ("id", "string", "environment ID"),
    ("slug", "string", "URL name"),
    ("name", "string", "display name"),
    ("mode", "string", "`connected` or `isolated`"),
    ("issuer", "string", "issuer URL"),
    ("signing_alg", "string", "signing algorithm"),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const ORG: &[Field] = &[
    ("id", "string", "organization ID (`org_…`)"),
    ("object", "string", "`organization`"),
    ("name", "string", "display name"),
    ("domains", "array", "verified domains"),
];
const ORG_UPDATED: &[Field] = &[
    ("id", "string", "organization ID"),
    ("object", "string", "`organization`"),
    ("name", "string", "display name"),
    ("domains", "array", "verified domains"),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const KEYS: &[Field] = &[
    ("activated", "string", "the key that signs from now on"),
    (
        "retired",
        "string",
        "the key that stopped signing (still published for the grace period)",
    ),
    (
        "published",
        "string",
        "the new next key, published before it signs",
    ),
];
const CLIENT: &[Field] = &[
    ("id", "string", "client ID (`client_…`)"),
    ("object", "string", "`client`"),
    ("name", "string", "display name"),
    ("kind", "string", "`confidential` or `public`"),
    (
        "token_endpoint_auth_method",
        "string",
        "client authentication method",
    ),
    ("redirect_uris", "array", "exact redirect URIs"),
    (
        "post_logout_redirect_uris",
        "array",
        "post-logout redirect URIs",
    ),
    ("grant_types", "array", "allowed grants"),
    ("scopes", "array", "allowed scopes"),
    ("token_exchange", "object", "token-exchange permissions"),
    ("lifetimes", "object", "token lifetimes in seconds"),
    (
        "has_jwks",
        "boolean",
        "whether the client authenticates with its own keys",
    ),
];
const CLIENT_UPDATED: &[Field] = &[
    ("id", "string", "client ID"),
    ("object", "string", "`client`"),
    ("name", "string", "display name"),
    ("kind", "string", "`confidential` or `public`"),
    (
        "token_endpoint_auth_method",
        "string",
        "client authentication method",
    ),
    ("redirect_uris", "array", "exact redirect URIs"),
    (
        "post_logout_redirect_uris",
        "array",
        "post-logout redirect URIs",
    ),
    ("grant_types", "array", "allowed grants"),
    ("scopes", "array", "allowed scopes"),
    ("token_exchange", "object", "token-exchange permissions"),
    ("lifetimes", "object", "token lifetimes in seconds"),
    (
        "has_jwks",
        "boolean",
        "whether the client authenticates with its own keys",
    ),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const USER_UPDATED: &[Field] = &[
    ("id", "string", "user ID"),
    ("object", "string", "`user`"),
    ("organization_id", "string", "the user's organization"),
    ("email", "string", "email address"),
    ("first_name", "string|null", "given name"),
    ("last_name", "string|null", "family name"),
    ("disabled", "boolean", "whether sign-in is blocked"),
    (
        "password_reset",
        "boolean",
        "whether the password was reset",
    ),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const USER: &[Field] = &[
    ("id", "string", "user ID (`user_…`)"),
    ("object", "string", "`user`"),
    ("organization_id", "string", "the user's organization"),
    ("email", "string", "email address"),
    ("first_name", "string|null", "given name"),
    ("last_name", "string|null", "family name"),
    ("disabled", "boolean", "whether sign-in is blocked"),
];
const PASSWORD_OK: &[Field] = &[
    ("user_id", "string", "the user who signed in"),
    ("email", "string", "their email"),
    ("organization_id", "string", "their organization"),
    ("client_id", "string", "the application they signed in to"),
];
const PASSWORD_FAILED: &[Field] = &[
    ("email", "string", "the email typed"),
    ("organization_id", "string", "the organization it routed to"),
    (
        "reason",
        "string",
        "why it failed (`bad_password`, `unknown_user`, `disabled`, `rate_limited`, …)",
    ),
    ("reference", "string", "the reference shown to the user"),
];
const EXCHANGED: &[Field] = &[
    ("client_id", "string", "the client that exchanged"),
    ("subject", "string", "the subject of the new token"),
    ("actor", "string|null", "the acting party, for delegation"),
    ("audience", "string", "the new token's audience"),
    ("scope", "string", "the new token's scope"),
    ("jti", "string", "the new token's ID"),
];
const REFRESH_REUSE: &[Field] = &[
    ("client_id", "string", "the client"),
    ("grant_id", "string", "the revoked grant family"),
    ("user_id", "string", "the user of the grant"),
];
const CODE_REUSE: &[Field] = &[
    ("client_id", "string", "the client"),
    ("grant_id", "string", "the revoked grant family"),
];
const POLICY: &[Field] = &[
    ("version", "integer", "the new policy version"),
    ("diff", "object", "rules added, removed and changed"),
];
const DENIED: &[Field] = &[
    ("url", "string", "`scheme://host:port` refused"),
    (
        "purpose",
        "string",
        "`metadata_fetch`, `jwks_fetch`, `token_exchange` or `webhook`",
    ),
    (
        "refusal",
        "string",
        "the reason, naming the rule that would allow it",
    ),
    (
        "addresses",
        "array",
        "each resolved address with its decision",
    ),
];
const CONNECTION: &[Field] = &[
    ("id", "string", "connection ID (`conn_…`)"),
    ("object", "string", "`connection`"),
    ("organization_id", "string", "the organization"),
    ("connection_type", "string", "`saml` or `oidc`"),
    ("name", "string", "display name"),
    ("state", "string", "`draft`, `active` or `inactive`"),
];
const CONNECTION_CHANGED: &[Field] = &[
    ("id", "string", "connection ID"),
    ("object", "string", "`connection`"),
    ("organization_id", "string", "the organization"),
    ("connection_type", "string", "`saml` or `oidc`"),
    ("name", "string", "display name"),
    ("state", "string", "the state after the change"),
    ("change", "object", "what changed (no secrets)"),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const SSO_OK: &[Field] = &[
    ("connection_id", "string", "the connection used"),
    ("organization_id", "string", "its organization"),
    ("profile_id", "string", "the profile (`prof_…`)"),
    ("idp_id", "string", "the subject at the IdP"),
    ("email", "string|null", "email from the IdP"),
    ("client_id", "string", "the application signed in to"),
];
const SSO_FAILED: &[Field] = &[
    ("connection_id", "string", "the connection"),
    ("organization_id", "string", "its organization"),
    ("reason", "string", "stable reason code"),
    ("detail", "string", "what the validation found"),
    ("reference", "string", "the reference shown to the user"),
];
const WEBHOOK: &[Field] = &[
    ("id", "string", "endpoint ID (`whk_…`)"),
    ("object", "string", "`webhook_endpoint`"),
    ("url", "string", "receiver URL"),
    ("description", "string", "free text"),
    (
        "event_types",
        "array",
        "the types delivered (empty: every type)",
    ),
    (
        "enabled",
        "boolean",
        "whether new events are enqueued and deliveries attempted",
    ),
    ("state", "string", "`active` or `failing`"),
    (
        "headers",
        "array",
        "names of the custom headers (values are never shown)",
    ),
];
const WEBHOOK_UPDATED: &[Field] = &[
    ("id", "string", "endpoint ID"),
    ("object", "string", "`webhook_endpoint`"),
    ("url", "string", "receiver URL"),
    ("description", "string", "free text"),
    ("event_types", "array", "the types delivered"),
    ("enabled", "boolean", "enabled"),
    ("state", "string", "`active` or `failing`"),
    ("headers", "array", "custom header names"),
    (
        "previous_attributes",
        "object",
        "the changed fields with their values before the change",
    ),
];
const CREDENTIAL_ROTATED: &[Field] = &[
    (
        "kind",
        "string",
        "`client_secret`, `private_key_jwt`, `environment_api_key`, `admin_api_key` or `webhook_secret`",
    ),
    (
        "id",
        "string",
        "the new credential's reference: `client_…/secret/<8 hex of its digest>`, `client_…/jwk/<kid>`, `key_…` or `whk_…/secret` (never the secret)",
    ),
    (
        "previous",
        "string|null",
        "the reference of the credential it replaces, when there is exactly one",
    ),
    (
        "owner_type",
        "string",
        "`client`, `api_key` or `webhook_endpoint`",
    ),
    ("owner_id", "string", "the client, API key or endpoint ID"),
    (
        "owner_name",
        "string",
        "the client's or key's name, the endpoint's URL",
    ),
    (
        "overlap_until",
        "string|null",
        "until then the replaced credential is still accepted (equal to the rotation time: no overlap); null for a `private_key_jwt` key, whose overlap lasts until the old key is removed",
    ),
    (
        "expires_at",
        "string|null",
        "when the new credential expires, if it does",
    ),
];
const CREDENTIAL_EXPIRED: &[Field] = &[
    (
        "kind",
        "string",
        "`client_secret`, `client_secret_previous`, `environment_api_key`, `admin_api_key` or `webhook_secret_previous`",
    ),
    ("id", "string", "the credential's reference"),
    (
        "owner_type",
        "string",
        "`client`, `api_key` or `webhook_endpoint`",
    ),
    ("owner_id", "string", "the client, API key or endpoint ID"),
    (
        "owner_name",
        "string",
        "the client's or key's name, the endpoint's URL",
    ),
    ("expires_at", "string", "the expiry that passed (RFC 3339)"),
    (
        "reason",
        "string",
        "`expired` (its own expiry: it is refused from now on and should be replaced) or `overlap_ended` (a rotation's overlap window ended: the replaced credential is no longer accepted)",
    ),
];
const WEBHOOK_HEALTH: &[Field] = &[
    ("id", "string", "endpoint ID"),
    ("object", "string", "`webhook_endpoint`"),
    ("state", "string", "the new state"),
    (
        "delivery_id",
        "string",
        "the delivery that caused the change (`dlv_…`)",
    ),
    (
        "status",
        "integer|null",
        "the HTTP status of its last attempt",
    ),
    ("error", "string|null", "the error of its last attempt"),
];

/// Every event type, in [`EventType::ALL`] order.
pub const CATALOGUE: &[Entry] = &[
    Entry {
        kind: EventType::EnvironmentCreated,
        description: "An environment was created (with its first signing keys).",
        fields: ENV,
    },
    Entry {
        kind: EventType::EnvironmentUpdated,
        description: "An environment's name, mode or key policy changed.",
        fields: ENV_UPDATED,
    },
    Entry {
        kind: EventType::OrganizationCreated,
        description: "An organization was created.",
        fields: ORG,
    },
    Entry {
        kind: EventType::OrganizationUpdated,
        description: "An organization's name or domains changed.",
        fields: ORG_UPDATED,
    },
    Entry {
        kind: EventType::OrganizationDeleted,
        description: "An organization was deleted.",
        fields: ORG,
    },
    Entry {
        kind: EventType::SigningKeyRotated,
        description: "The environment's signing keys rotated: next became active, active retired, a new next key was published.",
        fields: KEYS,
    },
    Entry {
        kind: EventType::ClientCreated,
        description: "An OAuth client (application or service account) was registered.",
        fields: CLIENT,
    },
    Entry {
        kind: EventType::ClientUpdated,
        description: "An OAuth client's settings changed (the data shows them after the change).",
        fields: CLIENT_UPDATED,
    },
    Entry {
        kind: EventType::ClientDeleted,
        description: "An OAuth client was deleted; its grants end.",
        fields: CLIENT,
    },
    Entry {
        kind: EventType::ClientSecretRotated,
        description: "A confidential client got a new secret; the previous one stays valid for its overlap.",
        fields: CLIENT_UPDATED,
    },
    Entry {
        kind: EventType::UserCreated,
        description: "A local user (password connection) was created.",
        fields: USER,
    },
    Entry {
        kind: EventType::UserUpdated,
        description: "A local user's names, password or enabled state changed (the data shows them after the change).",
        fields: USER_UPDATED,
    },
    Entry {
        kind: EventType::PasswordSucceeded,
        description: "A local user signed in with a password.",
        fields: PASSWORD_OK,
    },
    Entry {
        kind: EventType::PasswordFailed,
        description: "A password sign-in failed.",
        fields: PASSWORD_FAILED,
    },
    Entry {
        kind: EventType::TokenExchanged,
        description: "A token was issued by token exchange (RFC 8693).",
        fields: EXCHANGED,
    },
    Entry {
        kind: EventType::RefreshReuseDetected,
        description: "A rotated refresh token was presented again: the grant family was revoked.",
        fields: REFRESH_REUSE,
    },
    Entry {
        kind: EventType::CodeReuseDetected,
        description: "An authorization code was redeemed twice: the tokens issued from it were revoked.",
        fields: CODE_REUSE,
    },
    Entry {
        kind: EventType::EgressPolicyUpdated,
        description: "The environment's egress policy was replaced.",
        fields: POLICY,
    },
    Entry {
        kind: EventType::EgressDenied,
        description: "The egress gate refused an outbound request. Refusals of webhook deliveries are not themselves delivered by webhook (that would loop); they are in the Events API, the audit chain and the metrics.",
        fields: DENIED,
    },
    Entry {
        kind: EventType::ConnectionCreated,
        description: "An SSO connection was created (in the draft state).",
        fields: CONNECTION,
    },
    Entry {
        kind: EventType::ConnectionUpdated,
        description: "An SSO connection's settings or IdP metadata changed.",
        fields: CONNECTION_CHANGED,
    },
    Entry {
        kind: EventType::ConnectionActivated,
        description: "An SSO connection was activated: its users can sign in.",
        fields: CONNECTION_CHANGED,
    },
    Entry {
        kind: EventType::ConnectionDeactivated,
        description: "An SSO connection was deactivated.",
        fields: CONNECTION_CHANGED,
    },
    Entry {
        kind: EventType::ConnectionDeleted,
        description: "An SSO connection was deleted.",
        fields: CONNECTION,
    },
    Entry {
        kind: EventType::SsoSucceeded,
        description: "A user signed in through an SSO connection.",
        fields: SSO_OK,
    },
    Entry {
        kind: EventType::SsoFailed,
        description: "An SSO sign-in failed validation.",
        fields: SSO_FAILED,
    },
    Entry {
        kind: EventType::WebhookEndpointCreated,
        description: "A webhook endpoint was created.",
        fields: WEBHOOK,
    },
    Entry {
        kind: EventType::WebhookEndpointUpdated,
        description: "A webhook endpoint's URL, filter, headers, description or enabled state changed.",
        fields: WEBHOOK_UPDATED,
    },
    Entry {
        kind: EventType::WebhookEndpointDeleted,
        description: "A webhook endpoint was deleted with its deliveries.",
        fields: WEBHOOK,
    },
    Entry {
        kind: EventType::WebhookEndpointSecretRotated,
        description: "A webhook endpoint got a new signing secret; the previous one keeps signing until its overlap ends.",
        fields: WEBHOOK_UPDATED,
    },
    Entry {
        kind: EventType::WebhookEndpointFailing,
        description: "A delivery to the endpoint exhausted its retry schedule: the endpoint is marked failing. Its deliveries are kept and retried; nothing is dropped.",
        fields: WEBHOOK_HEALTH,
    },
    Entry {
        kind: EventType::WebhookEndpointRecovered,
        description: "A failing endpoint accepted a delivery again and is active.",
        fields: WEBHOOK_HEALTH,
    },
    Entry {
        kind: EventType::CredentialRotated,
        description: "A machine credential was rotated: a client secret, an API key or a webhook secret was replaced (the previous one accepted until `overlap_until`), or a `private_key_jwt` key was added to a client that already had keys. See `portcullis credentials report`.",
        fields: CREDENTIAL_ROTATED,
    },
    Entry {
        kind: EventType::CredentialExpired,
        description: "A machine credential passed its expiry (emitted once per credential and expiry, by the server's credential sweep, within a minute): a client secret or API key with an expiry, or a credential replaced by a rotation whose overlap ended. A rotated API key is revoked at that point.",
        fields: CREDENTIAL_EXPIRED,
    },
];

/// The entry of `kind`.
pub fn entry(kind: EventType) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|e| e.kind == kind)
}

/// The JSON Schema of an event type's `data`.
pub fn data_schema(e: &Entry) -> Value {
    let mut props = Map::new();
    for (name, ty, desc) in e.fields {
        let types: Vec<&str> = ty.split('|').collect();
        let t = if types.len() == 1 {
            json!(types[0])
        } else {
            json!(types)
        };
        props.insert((*name).into(), json!({ "type": t, "description": desc }));
    }
    json!({ "type": "object", "properties": props })
}

/// `docs/events.md`.
pub fn render(schedule: &RetrySchedule) -> String {
    let mut out = String::from(
        "# Event catalogue\n\n\
         <!-- Generated by `cargo test -p portcullis-events` from crates/events/src/catalogue.rs; \
         run it with PORTCULLIS_UPDATE_DOCS=1 to rewrite this file. -->\n\n\
         Every change Portcullis makes is written to the environment's event log in the same \
         transaction as the change. Events are numbered per environment in commit order and never \
         change. Read them three ways:\n\n\
         - **Pull**: `GET /e/{env}/events` with an environment API key (or the admin twin \
         `GET /admin/v1/environments/{env}/events`), paged with `after` = the last event ID seen.\n\
         - **Push**: webhook endpoints, signed per Standard Webhooks, retried on the schedule below.\n\
         - **Carry**: `portcullis events export` writes a signed file; `portcullis events verify` \
         checks it offline on the other side of the gap.\n\n\
         ## The event object\n\n\
         | field | type | meaning |\n|---|---|---|\n\
         | `id` | string | event ID (`evt_…`), sortable; also the `webhook-id` of its deliveries |\n\
         | `object` | string | `event` |\n\
         | `event` | string | the event type, below |\n\
         | `sequence` | integer | position in the environment's log (1, 2, 3 …) |\n\
         | `environment_id` | string | the environment |\n\
         | `organization_id` | string or null | the organization, where there is one |\n\
         | `data` | object | the payload of the type |\n\
         | `created_at` | string | RFC 3339, UTC |\n\n\
         ## Webhook delivery\n\n\
         Each event gets one delivery per enabled endpoint whose `event_types` take it (none \
         listed: every type), written in the event's transaction. A delivery is a `POST` of the \
         event object as `application/json` with the headers `webhook-id` (the event ID, the same \
         on every attempt), `webhook-timestamp` (seconds) and `webhook-signature` (`v1,<base64 \
         HMAC-SHA256 of \"{id}.{timestamp}.{body}\">` for the current secret and, during a \
         rotation's overlap, the previous one). A 2xx answer is a success; anything else — another \
         status, a redirect (never followed), a timeout, a closed connection, an oversized answer, \
         a refusal by the egress policy — is retried:\n\n\
         | after attempt | next attempt in | since the first attempt |\n|---|---|---|\n",
    );
    for (a, d, total) in schedule.table() {
        out += &format!(
            "| {a} | {} (± {}%) | {} |\n",
            human_duration(d),
            schedule.jitter_percent,
            human_duration(total)
        );
    }
    out += &format!(
        "\nAfter attempt {} the delivery is marked `failed` and its endpoint `failing` \
         (event `webhook_endpoint.failing`); nothing is dropped: failed deliveries stay listed and \
         are sent again by a manual retry or a replay. The schedule is configurable \
         (`webhook_retry_*` in the server configuration).\n\n## Event types\n",
        schedule.max_attempts
    );
    for e in CATALOGUE {
        out += &format!("\n### `{}`\n\n{}\n\n", e.kind.as_str(), e.description);
        out += "| `data` field | type | meaning |\n|---|---|---|\n";
        for (name, ty, desc) in e.fields {
            out += &format!("| `{name}` | {} | {desc} |\n", ty.replace('|', " or "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_catalogued_in_order() {
        let kinds: Vec<EventType> = CATALOGUE.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            EventType::ALL,
            "catalogue.rs lists every EventType, in order"
        );
        for e in CATALOGUE {
            assert!(!e.fields.is_empty() && !e.description.is_empty());
            assert!(data_schema(e)["properties"].as_object().is_some());
        }
    }

    #[test]
    fn docs_events_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md");
        let want = render(&RetrySchedule::default());
        if std::env::var_os("PORTCULLIS_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/events.md is stale: run `PORTCULLIS_UPDATE_DOCS=1 cargo test -p portcullis-events`"
        );
    }
}
