//! The configuration reference stays true: every option the code reads is
//! in `docs/configuration.md` and in `packaging/gateway.toml`, and that
//! example, as shipped and with every option uncommented, is a valid
//! configuration for the real loader.
//!
//! The options are found from the code itself, not from a list kept here:
//! [`options`] walks `Config`'s `Deserialize` impl, asking each struct it
//! reaches for its field names (serde hands them to `deserialize_struct`),
//! so an option added to any section shows up here at once.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use gateway::app::config::Config;
use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer as _, MapAccess, SeqAccess, Visitor};

type Error = de::value::Error;

/// A deserializer that leads the derived code down one path of field names
/// (`focus`) and records the fields of the struct it reaches at its end.
struct Walk<'a> {
    focus: &'a [String],
    found: &'a RefCell<Option<&'static [&'static str]>>,
}

impl<'de> Deserializer<'de> for Walk<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a value, not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.focus.is_empty() {
            *self.found.borrow_mut() = Some(fields);
            return Err(de::Error::custom("recorded"));
        }
        visitor.visit_map(One {
            focus: self.focus,
            found: self.found,
            key_given: false,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // An array of tables: its elements are at the array's own path.
        visitor.visit_seq(Once(Some(self)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map enum identifier ignored_any
    }
}

/// A struct's map with the one key the focus names.
struct One<'a> {
    focus: &'a [String],
    found: &'a RefCell<Option<&'static [&'static str]>>,
    key_given: bool,
}

impl<'de> MapAccess<'de> for One<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.key_given {
            return Ok(None);
        }
        self.key_given = true;
        seed.deserialize(self.focus[0].as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Walk {
            focus: &self.focus[1..],
            found: self.found,
        })
    }
}

struct Once<'a>(Option<Walk<'a>>);

impl<'de> SeqAccess<'de> for Once<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|w| seed.deserialize(w)).transpose()
    }
}

/// Every option of the configuration, as dotted paths (`mqtt.broker.host`,
/// `http.tokens.role`: an array of tables is named once), sections included.
fn options() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(focus) = queue.pop() {
        assert!(out.len() < 2000, "the walk does not end");
        let found = RefCell::new(None);
        let _ = Config::deserialize(Walk {
            focus: &focus,
            found: &found,
        });
        for f in found.into_inner().unwrap_or_default() {
            let mut next = focus.clone();
            next.push((*f).to_owned());
            if out.insert(next.join(".")) {
                queue.push(next);
            }
        }
    }
    out
}

/// Every key path written in a TOML table (arrays of tables named once).
fn written(table: &toml::Table, at: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        // A secret given as a file or a variable is that secret, written.
        let named = path
            .strip_suffix("_file")
            .or_else(|| path.strip_suffix("_env"))
            .filter(|s| !s.ends_with("tls_cert") && !s.ends_with("tls_key"));
        if let Some(secret) = named {
            out.insert(secret.to_owned());
        }
        out.insert(path.clone());
        match v {
            toml::Value::Table(t) => written(t, &path, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        written(t, &path, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The example with every option line (`#key = ...`, `#[section]`: a hash
/// and no space; prose comments have a space) uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The example's files (`/etc/fm-gateway/...`) made in `dir`, with real
/// certificates and keys, and the text pointed at them.
fn with_files(text: &str, dir: &Path) -> String {
    let tls = testkit::Tls::generate(dir);
    let text = text.replace("/etc/fm-gateway/", &format!("{}/", dir.display()));
    let text = text.replace("/var/lib/fm-gateway", &dir.join("data").display().to_string());
    let mut text = text;
    for (name, contents) in [
        ("admin-token", "an-admin-token-of-32-characters!\n".to_owned()),
        ("influx-token", "influx-write-token\n".to_owned()),
        ("broker-password", "broker-password\n".to_owned()),
        ("smtp-password", "smtp-password\n".to_owned()),
        ("wecom-key", "wecom-robot-key\n".to_owned()),
        ("dingtalk-secret", "SEC0123456789\n".to_owned()),
        ("sms-token", "sms-token\n".to_owned()),
        ("sms-secret", "sms-secret\n".to_owned()),
        ("dingtalk-token", "dingtalk-access-token\n".to_owned()),
        ("auditor-token", "an-auditor-token-of-32-characters\n".to_owned()),
        ("webhook-secret", "webhook-secret\n".to_owned()),
        ("elevator-platform-secret", "elevator-platform-secret\n".to_owned()),
    ] {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    for (name, from) in [
        ("tls/http.crt", &tls.cert),
        ("tls/http.key", &tls.key),
        ("tls/mqtt.crt", &tls.cert),
        ("tls/mqtt.key", &tls.key),
        ("tls/broker-ca.crt", &tls.ca),
        ("tls/client.crt", &tls.cert),
        ("tls/client.key", &tls.key),
    ] {
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    text.push('\n');
    text
}

fn load(text: &str) -> Config {
    match Config::check(Path::new("packaging/gateway.toml"), text) {
        Ok(c) => c,
        Err(all) => panic!(
            "{}\n---\n{text}",
            all.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        ),
    }
}

/// The example as shipped is a production configuration: valid, the API's
/// admin token from a file, devices authenticated, data in the package's
/// state directory.
#[test]
fn the_example_as_shipped_is_valid_for_production() {
    let text = std::fs::read_to_string(repo().join("packaging/gateway.toml")).unwrap();
    assert!(text.contains("admin_token_file = \"/etc/fm-gateway/admin-token\""));
    assert!(text.contains("data_dir = \"/var/lib/fm-gateway\""));
    let dir = tempfile::tempdir().unwrap();
    let c = load(&with_files(&text, dir.path()));
    assert_eq!(c.http.admin_token.as_deref(), Some("an-admin-token-of-32-characters!"));
    assert_eq!(c.storage.data_dir, dir.path().join("data"));
    assert_eq!(c.mqtt.effective_auth(), gateway::app::config::MqttAuth::Devices);
}

/// With every option uncommented, the example is still valid: no option
/// is documented with a value the loader refuses.
#[test]
fn the_example_with_every_option_uncommented_is_valid() {
    let text = std::fs::read_to_string(repo().join("packaging/gateway.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    load(&with_files(&uncommented(&text), dir.path()));
}

/// Every option the code reads is in the example (uncommented) and in the
/// reference, and the example names none the code does not read.
#[test]
fn every_option_is_in_the_example_and_the_reference() {
    let options = options();
    if std::env::var_os("FM_PRINT_OPTIONS").is_some() {
        println!("{}", options.iter().cloned().collect::<Vec<_>>().join("\n"));
    }
    for known in [
        "mqtt.listen",
        "mqtt.broker.host",
        "http.tokens.role",
        "alerting.rules.for",
        "contacts.webhook.url",
    ] {
        assert!(options.contains(known), "the walk finds {known}: {options:?}");
    }
    let example = std::fs::read_to_string(repo().join("packaging/gateway.toml")).unwrap();
    let table: toml::Table = uncommented(&example).parse().unwrap();
    let mut in_example = BTreeSet::new();
    written(&table, "", &mut in_example);
    let reference = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let missing_example: Vec<_> = options.iter().filter(|o| !in_example.contains(*o)).collect();
    let missing_reference: Vec<_> = options
        .iter()
        .filter(|o| !reference.contains(&format!("`{o}`")))
        .collect();
    assert!(
        missing_example.is_empty() && missing_reference.is_empty(),
        "not in packaging/gateway.toml: {missing_example:?}\nnot in docs/configuration.md: {missing_reference:?}"
    );
}
