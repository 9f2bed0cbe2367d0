//! The original tool's environment variables, so its Docker users can switch images
//! without rewriting their environment.
//!
//! The later Go versions (opencord/maas `automation/maas-flow.go`, `Config`) read their
//! settings with `envconfig.Process("AUTOMATION", ...)`: each variable is looked up as
//! `AUTOMATION_<NAME>` first, then as `<NAME>`. Booleans are Go's `strconv.ParseBool`
//! (`1 t T TRUE true True 0 f F FALSE false False`), durations Go's `time.ParseDuration`
//! (`15s`, `1h30m`, `1.5h`, `300ms`), filters and mappings JSON or `@file`. Each value
//! lands on the maas-flow key with the same meaning, below maas-flow's own
//! `MAAS_FLOW_*` variables and flags and above the TOML file. A bad value is reported
//! naming the variable the operator actually set.

use std::time::Duration;

use crate::config::ConfigError;

/// Where one variable's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string setting.
    Text,
    /// A Go duration, stored as a humantime string.
    GoDuration,
    /// A Go boolean.
    GoBool,
    /// `PROVISION_URL`: an http(s) URL is the HTTP provisioner, anything else a script.
    ProvisionUrl,
    /// `LOG_LEVEL`: a logrus level name.
    LogrusLevel,
    /// `LOG_FORMAT`: `json`, anything else text (as the original's `switch`).
    LogFormat,
}

/// What a set-but-empty variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Empty {
    /// Treated as unset (the original also fell back: no provisioner, no mappings,
    /// the key file, the default level).
    Unset,
    /// A configuration error: the original failed too, or (for `HOST_FILTER_SPEC`)
    /// selected no machine at all, which an empty value surely did not mean.
    Error,
}

/// `(name, maas-flow key, kind, empty)`, in the original's `Config` order.
const VARS: &[(&str, &str, Kind, Empty)] = &[
    (
        "POWER_HELPER_USER",
        "lifecycle.power_helper_user",
        Kind::Text,
        Empty::Unset,
    ),
    (
        "POWER_HELPER_SCRIPT",
        "lifecycle.power_helper_script",
        Kind::Text,
        Empty::Unset,
    ),
    (
        "PROVISION_URL",
        "provision.url",
        Kind::ProvisionUrl,
        Empty::Unset,
    ),
    (
        "PROVISION_TTL",
        "provision.ttl",
        Kind::GoDuration,
        Empty::Error,
    ),
    ("LOG_LEVEL", "log.level", Kind::LogrusLevel, Empty::Unset),
    ("LOG_FORMAT", "log.format", Kind::LogFormat, Empty::Unset),
    ("MAAS_API_KEY", "maas.api_key", Kind::Text, Empty::Unset),
    (
        "MAAS_API_KEY_FILE",
        "maas.api_key_file",
        Kind::Text,
        Empty::Unset,
    ),
    ("MAAS_URL", "maas.url", Kind::Text, Empty::Error),
    (
        "MAAS_API_VERSION",
        "maas.api_version",
        Kind::Text,
        Empty::Error,
    ),
    (
        "MAAS_QUERY_INTERVAL",
        "maas.period",
        Kind::GoDuration,
        Empty::Error,
    ),
    ("PREVIEW_ONLY", "preview", Kind::GoBool, Empty::Error),
    (
        "ALWAYS_RENAME",
        "lifecycle.always_rename",
        Kind::GoBool,
        Empty::Error,
    ),
    (
        "MAC_TO_NAME_MAPPINGS",
        "lifecycle.mappings",
        Kind::Text,
        Empty::Unset,
    ),
    ("HOST_FILTER_SPEC", "filter.json", Kind::Text, Empty::Error),
];

/// Every environment variable that can carry the API key: removed from maas-flow's own
/// environment once the configuration is loaded, so no child process inherits it.
pub const KEY_VARS: [&str; 3] = [
    "MAAS_FLOW_MAAS__API_KEY",
    "MAAS_API_KEY",
    "AUTOMATION_MAAS_API_KEY",
];

/// The prefix the original passed to `envconfig.Process`.
const PREFIX: &str = "AUTOMATION_";

/// One maas-flow setting taken from one of the original's variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The variable as the operator spelled it (`MAAS_URL` or `AUTOMATION_MAAS_URL`).
    pub var: String,
    pub key: &'static str,
    pub value: toml::Value,
}

/// The settings and warnings from the original's variables in `env`.
#[derive(Debug, Clone, Default)]
pub struct Legacy {
    pub settings: Vec<Setting>,
    pub warnings: Vec<String>,
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<(String, &'a str)> {
    let prefixed = format!("{PREFIX}{name}");
    env.iter()
        .find(|(k, _)| *k == prefixed)
        .or_else(|| env.iter().find(|(k, _)| k == name))
        .map(|(k, v)| (k.clone(), v.as_str()))
}

fn bad(var: &str, key: &str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        key: var.to_string(),
        problem: format!("{problem} (the original tool's variable, for `{key}`)"),
    }
}

/// Read the original's variables from `env`.
pub fn collect(env: &[(String, String)]) -> Result<Legacy, ConfigError> {
    let mut out = Legacy::default();
    for &(name, key, kind, empty) in VARS {
        let Some((var, raw)) = lookup(env, name) else {
            continue;
        };
        let v = raw.trim();
        if v.is_empty() {
            match empty {
                Empty::Unset => continue,
                Empty::Error => return Err(bad(&var, key, "is set but empty")),
            }
        }
        let text = |s: &str| toml::Value::String(s.to_string());
        match kind {
            Kind::Text => out.settings.push(Setting {
                var,
                key,
                value: text(v),
            }),
            Kind::GoDuration => {
                let d = parse_go_duration(v).map_err(|e| bad(&var, key, e))?;
                out.settings.push(Setting {
                    var,
                    key,
                    value: text(&humantime::format_duration(d).to_string()),
                });
            }
            Kind::GoBool => {
                let b = parse_go_bool(v).ok_or_else(|| {
                    bad(
                        &var,
                        key,
                        format!("`{v}` is not a boolean (1, t, true, TRUE, 0, f, false, FALSE)"),
                    )
                })?;
                out.settings.push(Setting {
                    var,
                    key,
                    value: toml::Value::Boolean(b),
                });
            }
            Kind::ProvisionUrl => {
                // One provisioner: the other key is cleared, so a file's script does
                // not collide with the variable's URL.
                let (set, clear, val) = if v.starts_with("http://") || v.starts_with("https://") {
                    ("provision.url", "provision.script", v.to_string())
                } else {
                    (
                        "provision.script",
                        "provision.url",
                        v.strip_prefix("file://").unwrap_or(v).to_string(),
                    )
                };
                out.settings.push(Setting {
                    var: var.clone(),
                    key: set,
                    value: text(&val),
                });
                out.settings.push(Setting {
                    var,
                    key: clear,
                    value: text(""),
                });
            }
            Kind::LogrusLevel => {
                let level = logrus_level(v).ok_or_else(|| {
                    bad(
                        &var,
                        key,
                        format!("`{v}` is not a level (panic, fatal, error, warn, warning, info, debug)"),
                    )
                })?;
                out.settings.push(Setting {
                    var,
                    key,
                    value: text(level),
                });
            }
            Kind::LogFormat => out.settings.push(Setting {
                var,
                key,
                value: text(if v == "json" { "json" } else { "text" }),
            }),
        }
    }
    if let Some((var, v)) = lookup(env, "MAAS_SHOW_API_KEY") {
        if parse_go_bool(v.trim()) == Some(true) {
            out.warnings.push(format!(
                "{var} is ignored: maas-flow never shows the API key"
            ));
        }
    }
    Ok(out)
}

impl Legacy {
    /// The settings as a TOML document, one layer of the configuration.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        for s in &self.settings {
            let mut table = &mut root;
            let mut parts = s.key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_string(), s.value.clone());
                } else {
                    table = match table
                        .entry(part.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    {
                        toml::Value::Table(t) => t,
                        _ => break,
                    };
                }
            }
        }
        toml::to_string(&root).unwrap_or_default()
    }

    /// The variable that set `key` (or, for `filter.*`, the filter), if any.
    pub fn source_of(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| {
            s.key == key
                || (s.key == "filter.json" && (key == "filter" || key.starts_with("filter.")))
                || ((s.key == "provision.url" || s.key == "provision.script") && key == "provision")
        })
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// logrus's `ParseLevel` (case-insensitive) as a tracing level. Panic and fatal are
/// errors here: maas-flow has no levels above error.
fn logrus_level(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        _ => return None,
    })
}

/// Go's `time.ParseDuration`: `[+]` then one or more `<number><unit>`, the number
/// possibly fractional, units `ns us µs μs ms s m h`; `0` alone is zero. Negative
/// durations, which Go accepts, mean nothing for an interval or a TTL and are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("`{s}` is not a Go duration (e.g. 15s, 1h30m, 1.5h, 300ms)");
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('-') {
        if r != "0" {
            return Err(format!("`{s}` is negative"));
        }
        rest = r;
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("`{s}` has a number without a unit (s, m, h...)")),
            _ => return Err(format!("`{s}` has an unknown unit `{unit}`")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        // Digits beyond nanosecond precision change nothing.
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        total = int
            .checked_mul(nanos_per)
            .and_then(|t| t.checked_add(frac * nanos_per / scale))
            .and_then(|t| total.checked_add(t))
            .filter(|t| *t <= i64::MAX as u128)
            .ok_or_else(|| format!("`{s}` is too long"))?;
        rest = next;
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn go_durations_parse_as_go_does() {
        let ok = [
            ("15s", Duration::from_secs(15)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("2h45m30.5s", Duration::from_millis(9_930_500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("+5s", Duration::from_secs(5)),
            ("0", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
            ("10\u{b5}s", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_go_duration(s), Ok(d), "{s}");
        }
        for s in [
            "",
            "5",
            "5d",
            "s",
            ".s",
            "-5s",
            "1h 30m",
            "soon",
            "99999999999h",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn go_booleans_are_strconv_parsebool() {
        for s in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(s), Some(true));
        }
        for s in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(s), Some(false));
        }
        for s in ["yes", "on", "tRUE", ""] {
            assert_eq!(parse_go_bool(s), None);
        }
    }

    #[test]
    fn the_automation_prefix_wins_as_in_envconfig() {
        let l = collect(&env(&[
            ("MAAS_URL", "http://a/MAAS"),
            ("AUTOMATION_MAAS_URL", "http://b/MAAS"),
        ]))
        .unwrap();
        assert_eq!(l.settings.len(), 1);
        assert_eq!(l.settings[0].var, "AUTOMATION_MAAS_URL");
        assert_eq!(l.settings[0].value.as_str(), Some("http://b/MAAS"));
    }

    #[test]
    fn values_land_on_their_keys() {
        let l = collect(&env(&[
            ("MAAS_QUERY_INTERVAL", "1m30s"),
            ("PREVIEW_ONLY", "T"),
            ("LOG_LEVEL", "WARNING"),
            ("PROVISION_URL", "http://p/provision"),
        ]))
        .unwrap();
        let toml: toml::Table = l.to_toml().parse().unwrap();
        assert_eq!(toml["maas"]["period"].as_str(), Some("1m 30s"));
        assert_eq!(toml["preview"].as_bool(), Some(true));
        assert_eq!(toml["log"]["level"].as_str(), Some("warn"));
        assert_eq!(
            toml["provision"]["url"].as_str(),
            Some("http://p/provision")
        );
        assert_eq!(toml["provision"]["script"].as_str(), Some(""));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, v) in [
            ("PREVIEW_ONLY", "yes"),
            ("MAAS_QUERY_INTERVAL", "15"),
            ("PROVISION_TTL", "1d"),
            ("LOG_LEVEL", "verbose"),
            ("HOST_FILTER_SPEC", ""),
            ("MAAS_URL", " "),
        ] {
            let e = collect(&env(&[(var, v)])).unwrap_err();
            assert_eq!(e.key, var, "{e}");
        }
        assert!(
            collect(&env(&[("MAAS_API_KEY", ""), ("PROVISION_URL", "")]))
                .unwrap()
                .settings
                .is_empty()
        );
    }
}
