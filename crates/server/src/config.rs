//! Server configuration: embedded commented defaults < TOML file < `PORTCULLIS_*` environment
//! variables < command-line flags. Unknown keys are refused by name at every layer, and a value of
//! the wrong type names the key and the layer it came from.

use std::path::PathBuf;

use serde::Deserialize;

/// The commented defaults, embedded in the binary and printed by `portcullis config defaults`.
pub const DEFAULTS: &str = include_str!("../config/defaults.toml");

/// Environment variables that belong to the admin client or to bootstrap, not to this file.
const CLIENT_VARS: &[&str] = &[
    "PORTCULLIS_URL",
    "PORTCULLIS_ADMIN_KEY",
    "PORTCULLIS_CONFIG",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub max_connections: u32,
    pub master_key_file: String,
    pub bootstrap_admin_key: String,
    pub bootstrap_admin_key_file: String,
    pub demo: bool,
    pub log_format: String,
    pub log_level: String,
    pub key_check_interval_seconds: u64,
    pub audit_checkpoint_interval_seconds: u64,
    pub key_lifetime_days: i64,
    pub key_grace_days: i64,
    pub max_body_bytes: usize,
    pub trusted_proxies: String,
    pub egress_proxy: String,
    pub egress_timeout_seconds: u64,
    pub egress_max_response_bytes: usize,
    pub webhook_dispatcher: bool,
    pub node_name: String,
    pub webhook_lease_seconds: u64,
    pub webhook_per_endpoint_in_flight: usize,
    pub webhook_max_in_flight: usize,
    pub webhook_poll_interval_ms: u64,
    pub webhook_retry_first_seconds: i64,
    pub webhook_retry_max_delay_seconds: i64,
    pub webhook_retry_max_attempts: u32,
    pub webhook_retry_jitter_percent: u32,
    pub client_secret_rotation_days: u32,
    pub private_key_jwt_rotation_days: u32,
    pub environment_api_key_rotation_days: u32,
    pub admin_api_key_rotation_days: u32,
    pub webhook_secret_rotation_days: u32,
    pub credential_sweep_interval_seconds: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Builds the configuration from its layers. `file` is the TOML text of `--config` (with its
    /// path for messages), `env` the process environment, `flags` the `(key, value)` pairs given
    /// on the command line.
    pub fn load(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = DEFAULTS
            .parse()
            .map_err(|e| ConfigError(format!("embedded defaults: {e}")))?;
        let known = table.clone();
        if let Some((path, text)) = file {
            let overlay: toml::Table = text
                .parse()
                .map_err(|e| ConfigError(format!("{path}: {e}")))?;
            for (k, v) in overlay {
                let expected = known.get(&k).ok_or_else(|| {
                    ConfigError(format!(
                        "{path}: unknown key `{k}` (known: {})",
                        key_list(&known)
                    ))
                })?;
                if expected.type_str() != v.type_str() {
                    return Err(ConfigError(format!(
                        "{path}: `{k}` must be a {}, found a {}",
                        expected.type_str(),
                        v.type_str()
                    )));
                }
                table.insert(k, v);
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("PORTCULLIS_") else {
                continue;
            };
            if CLIENT_VARS.contains(&name.as_str()) {
                continue;
            }
            let key = key.to_ascii_lowercase();
            set_from_text(
                &mut table,
                &known,
                &key,
                &value,
                &format!("environment variable {name}"),
            )?;
        }
        for (key, value) in flags {
            set_from_text(
                &mut table,
                &known,
                key,
                value,
                &format!("flag --{}", key.replace('_', "-")),
            )?;
        }
        check_ranges(&table)?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.message().to_owned()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// `trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<portcullis_egress::addr::Cidr>, ConfigError> {
        crate::client_addr::parse_trusted(&self.trusted_proxies)
            .map_err(|e| ConfigError(format!("`trusted_proxies`: {e}")))
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError(format!(
                "`listen` must be an address like 127.0.0.1:8080, not {:?}",
                self.listen
            ))
        })?;
        portcullis_core::validate::base_url(&self.public_url)
            .map_err(|e| ConfigError(format!("`public_url`: {e}")))?;
        if !matches!(self.log_format.as_str(), "human" | "json") {
            return Err(ConfigError(format!(
                "`log_format` must be \"human\" or \"json\", not {:?}",
                self.log_format
            )));
        }
        if self.key_lifetime_days < 1 || self.key_grace_days < 0 {
            return Err(ConfigError(
                "`key_lifetime_days` must be at least 1 and `key_grace_days` at least 0".into(),
            ));
        }
        if self.key_check_interval_seconds == 0
            || self.max_connections == 0
            || self.max_body_bytes < 1024
        {
            return Err(ConfigError(
                "`key_check_interval_seconds` and `max_connections` must be positive, `max_body_bytes` at least 1024".into(),
            ));
        }
        if !(1..=300).contains(&self.egress_timeout_seconds)
            || !(1024..=1 << 30).contains(&self.egress_max_response_bytes)
        {
            return Err(ConfigError(
                "`egress_timeout_seconds` must be 1 to 300 and `egress_max_response_bytes` 1024 to 1 GiB".into(),
            ));
        }
        self.trusted_proxies()?;
        let proxy_ok = ["http://", "https://"]
            .iter()
            .any(|p| self.egress_proxy.starts_with(p));
        if !self.egress_proxy.is_empty() && !proxy_ok {
            return Err(ConfigError(format!(
                "`egress_proxy` must be an http:// or https:// URL, not {:?}",
                self.egress_proxy
            )));
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or SQLite in the data directory.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("portcullis.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// When each kind of machine credential is due for rotation.
    pub fn credential_policy(&self) -> portcullis_core::credential::RotationPolicy {
        portcullis_core::credential::RotationPolicy {
            client_secret_days: self.client_secret_rotation_days,
            private_key_jwt_days: self.private_key_jwt_rotation_days,
            environment_api_key_days: self.environment_api_key_rotation_days,
            admin_api_key_days: self.admin_api_key_rotation_days,
            webhook_secret_days: self.webhook_secret_rotation_days,
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        if self.master_key_file.is_empty() {
            self.data_dir.join("master.key")
        } else {
            PathBuf::from(&self.master_key_file)
        }
    }
}

/// Integer keys and their ranges, checked before the values are typed: a negative pool size would
/// otherwise fail without naming its key, and a lifetime of `i64::MAX` days overflows when turned
/// into seconds. The day limits are the admin API's.
const RANGES: &[(&str, i64, i64)] = &[
    ("max_connections", 1, 10_000),
    ("key_check_interval_seconds", 1, 31_536_000),
    ("audit_checkpoint_interval_seconds", 1, 86_400),
    ("key_lifetime_days", 1, 3650),
    ("key_grace_days", 0, 3650),
    ("max_body_bytes", 1024, 1 << 30),
    ("webhook_lease_seconds", 15, 86_400),
    ("webhook_per_endpoint_in_flight", 1, 100),
    ("webhook_max_in_flight", 1, 10_000),
    ("webhook_poll_interval_ms", 10, 60_000),
    ("webhook_retry_first_seconds", 1, 86_400),
    ("webhook_retry_max_delay_seconds", 1, 2_592_000),
    ("webhook_retry_max_attempts", 1, 100),
    ("webhook_retry_jitter_percent", 0, 50),
    ("client_secret_rotation_days", 0, 3650),
    ("private_key_jwt_rotation_days", 0, 3650),
    ("environment_api_key_rotation_days", 0, 3650),
    ("admin_api_key_rotation_days", 0, 3650),
    ("webhook_secret_rotation_days", 0, 3650),
    ("credential_sweep_interval_seconds", 1, 86_400),
];

fn check_ranges(table: &toml::Table) -> Result<(), ConfigError> {
    for (key, min, max) in RANGES {
        if let Some(v) = table.get(*key).and_then(toml::Value::as_integer)
            && !(*min..=*max).contains(&v)
        {
            return Err(ConfigError(format!(
                "`{key}` must be {min} to {max}, not {v}"
            )));
        }
    }
    Ok(())
}

fn key_list(t: &toml::Table) -> String {
    t.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Sets `key` from a text value, typed after the embedded default of the same key.
fn set_from_text(
    table: &mut toml::Table,
    known: &toml::Table,
    key: &str,
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let expected = known.get(key).ok_or_else(|| {
        ConfigError(format!(
            "{origin}: unknown key `{key}` (known: {})",
            key_list(known)
        ))
    })?;
    let value = match expected {
        toml::Value::Integer(_) => text
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| {
                ConfigError(format!(
                    "{origin}: `{key}` must be an integer, not {text:?}"
                ))
            })?,
        toml::Value::Boolean(_) => match text.trim() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "" => toml::Value::Boolean(false),
            _ => {
                return Err(ConfigError(format!(
                    "{origin}: `{key}` must be true or false, not {text:?}"
                )));
            }
        },
        _ => toml::Value::String(text.to_owned()),
    };
    table.insert(key.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let file = "listen = \"127.0.0.1:9000\"\ndemo = true\nlog_level = \"debug\"";
        let c = Config::load(
            Some(("p.toml", file)),
            env(&[
                ("PORTCULLIS_LISTEN", "127.0.0.1:9001"),
                ("PORTCULLIS_ADMIN_KEY", "x"),
                ("HOME", "/"),
            ]),
            &[("listen", "127.0.0.1:9002".into())],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9002", "flag beats env beats file");
        assert!(c.demo, "file beats defaults");
        assert_eq!(c.log_level, "debug");
        let c = Config::load(
            Some(("p.toml", file)),
            env(&[("PORTCULLIS_LISTEN", "127.0.0.1:9001")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
    }

    #[test]
    fn trusted_proxies_are_checked_at_load() {
        let c = Config::load(
            None,
            env(&[("PORTCULLIS_TRUSTED_PROXIES", "10.0.0.0/8, fd00::1")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.trusted_proxies().unwrap().len(), 2);
        assert!(
            Config::load(None, env(&[]), &[])
                .unwrap()
                .trusted_proxies()
                .unwrap()
                .is_empty(),
            "none by default"
        );
        let e =
            Config::load(None, env(&[]), &[("trusted_proxies", "lb.internal".into())]).unwrap_err();
        assert!(
            e.0.contains("`trusted_proxies`") && e.0.contains("lb.internal"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::load(Some(("p.toml", "listne = \"x\"")), env(&[]), &[]).unwrap_err();
        assert!(
            e.0.contains("unknown key `listne`") && e.0.contains("p.toml"),
            "{e}"
        );
        let e = Config::load(None, env(&[("PORTCULLIS_LISTNE", "x")]), &[]).unwrap_err();
        assert!(e.0.contains("PORTCULLIS_LISTNE"), "{e}");
        let e = Config::load(None, env(&[("PORTCULLIS_DEMO", "maybe")]), &[]).unwrap_err();
        assert!(e.0.contains("`demo` must be true or false"), "{e}");
        let e = Config::load(Some(("p.toml", "demo = \"yes\"")), env(&[]), &[]).unwrap_err();
        assert!(e.0.contains("`demo` must be a boolean"), "{e}");
        let e = Config::load(None, env(&[]), &[("listen", "nowhere".into())]).unwrap_err();
        assert!(e.0.contains("`listen`"), "{e}");
    }

    #[test]
    fn integers_out_of_range_are_named() {
        for (var, value, key) in [
            (
                "PORTCULLIS_KEY_LIFETIME_DAYS",
                "9223372036854775807",
                "`key_lifetime_days`",
            ),
            ("PORTCULLIS_KEY_GRACE_DAYS", "-1", "`key_grace_days`"),
            ("PORTCULLIS_MAX_CONNECTIONS", "-1", "`max_connections`"),
            ("PORTCULLIS_MAX_BODY_BYTES", "-5", "`max_body_bytes`"),
            (
                "PORTCULLIS_KEY_CHECK_INTERVAL_SECONDS",
                "0",
                "`key_check_interval_seconds`",
            ),
        ] {
            let e = Config::load(None, env(&[(var, value)]), &[]).unwrap_err();
            assert!(e.0.contains(key), "{var}={value}: {e}");
        }
        let e = Config::load(Some(("p.toml", "max_connections = -3")), env(&[]), &[]).unwrap_err();
        assert!(e.0.contains("`max_connections`"), "{e}");
        assert!(Config::load(None, env(&[("PORTCULLIS_KEY_GRACE_DAYS", "0")]), &[]).is_ok());
    }
}
