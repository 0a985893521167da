//! Secrets out of the configuration's records.
//!
//! The configuration is recorded in the supervision chain (`config_initial`,
//! `config_changed` with its diff), which auditors read and export and which
//! can never be edited without breaking it. So before the text is recorded,
//! the value of every secret field (`token`, `password`, `secret`, and keys
//! ending in `_token`, `_password` or `_secret`, in tables, inline tables and
//! arrays of tables alike) is replaced by `"<redacted FINGERPRINT>"`: a keyed
//! fingerprint of the value (`records::Signer::fingerprint`), so the diff
//! still shows that a secret changed, and when, without showing it.
//!
//! A scanner rather than a TOML parser and printer: the recorded text must
//! stay the file as written (comments, order, layout), line for line, so its
//! diffs read as the operator's edits; only the secret string literals change.

/// Whether a key names a secret (`token`, `password`, `secret`, or one ending `_token`, `_password`, `_secret`).
#[must_use]
pub fn is_secret(key: &str) -> bool {
    const NAMES: [&str; 3] = ["token", "password", "secret"];
    NAMES.contains(&key)
        || NAMES
            .iter()
            .any(|n| key.len() > n.len() && key.ends_with(n) && key[..key.len() - n.len()].ends_with('_'))
}

/// The length of the TOML string literal at the start of `s` (with its
/// quotes; basic, literal, and their multi-line forms), if `s` starts with one.
fn string_literal(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = *bytes.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let multi = bytes.len() >= 3 && bytes[1] == quote && bytes[2] == quote;
    let delim = if multi { 3 } else { 1 };
    let mut at = delim;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote == b'"' => at += 2,
            b'\n' if !multi => return None,
            c if c == quote && (!multi || bytes[at..].starts_with(&[quote, quote, quote])) => return Some(at + delim),
            _ => at += 1,
        }
    }
    None
}

/// The text with every secret string value replaced by
/// `"<redacted FINGERPRINT>"`, `fingerprint` given the literal's content.
pub fn redact(text: &str, fingerprint: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // The last bare key seen outside strings and comments, and whether an
    // `=` followed it (the next string is then its value).
    let mut key = "";
    let mut assigning = false;
    while let Some(c) = rest.chars().next() {
        if c == '#' {
            let end = rest.find('\n').unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if let Some(n) = string_literal(rest) {
            let literal = &rest[..n];
            if assigning && is_secret(key) {
                let q = if literal.starts_with("\"\"\"") || literal.starts_with("'''") {
                    3
                } else {
                    1
                };
                let content = &literal[q..literal.len() - q];
                if content.starts_with("<redacted ") && content.ends_with('>') {
                    // Redacted already (a text recorded before): as it is.
                    out.push_str(literal);
                } else {
                    out.push_str("\"<redacted ");
                    out.push_str(&fingerprint(content));
                    out.push_str(">\"");
                }
            } else {
                out.push_str(literal);
            }
            rest = &rest[n..];
            assigning = false;
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
                .unwrap_or(rest.len());
            if !assigning {
                key = &rest[..end];
            }
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            assigning = false;
            continue;
        }
        match c {
            '=' => assigning = true,
            ' ' | '\t' => {}
            // A new key follows these (or the value is not a string).
            _ => assigning = false,
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(v: &str) -> String {
        format!("fp({})", v.len())
    }

    #[test]
    fn secret_values_are_replaced_and_nothing_else() {
        let text = r#"# the broker; password below
[mqtt.broker]
host = "broker.lan"   # not a secret
password = "hunter2"
client_key_file = "/etc/fm/gateway.key"

[[http.tokens]]
name = "li.wei"
token = 'at least 16 characters'
role = "engineer"

[[contacts]]
webhook = { url = "https://x/y", secret = "s\"3" }
[influx]
api_token="tok"
broker.password = "dotted"
token_file = "/run/secrets/t"
"#;
        let got = redact(text, fp);
        assert_eq!(
            got,
            r#"# the broker; password below
[mqtt.broker]
host = "broker.lan"   # not a secret
password = "<redacted fp(7)>"
client_key_file = "/etc/fm/gateway.key"

[[http.tokens]]
name = "li.wei"
token = "<redacted fp(22)>"
role = "engineer"

[[contacts]]
webhook = { url = "https://x/y", secret = "<redacted fp(4)>" }
[influx]
api_token="<redacted fp(3)>"
broker.password = "<redacted fp(6)>"
token_file = "/run/secrets/t"
"#
        );
        for secret in ["hunter2", "at least 16 characters", "s\\\"3", "\"tok\"", "dotted"] {
            assert!(!got.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn multi_line_strings_and_strings_that_look_like_keys() {
        let text = "note = \"password = 'x'\"\nsecret = \"\"\"\nline\n\"\"\"\nname = 'token'\n";
        assert_eq!(
            redact(text, fp),
            "note = \"password = 'x'\"\nsecret = \"<redacted fp(6)>\"\nname = 'token'\n"
        );
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        let once = redact("password = \"hunter2\"\n", fp);
        assert_eq!(redact(&once, fp), once);
    }

    #[test]
    fn secret_names() {
        for k in [
            "token",
            "password",
            "secret",
            "api_token",
            "smtp_password",
            "client_secret",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in ["tokens", "token_file", "passwords", "secretary", "name"] {
            assert!(!is_secret(k), "{k}");
        }
    }
}
