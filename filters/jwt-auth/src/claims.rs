//! Claim values as headers (`claim_to_headers`) and the `claim_rules`
//! extension's check.

use serde_json::{Map, Value};

use crate::config::ClaimRule;
use crate::jwt::claim_at;

/// A claim rendered as jwt_authn renders it for `claim_to_headers`: strings
/// as they are, integral non-negative numbers as integers, other numbers as
/// C++ `std::to_string(double)` (six decimals), booleans as `true`/`false`.
/// Objects, arrays, null, empty strings and values with CR, LF or NUL (which
/// would be header injection) give `None`.
#[must_use]
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_u64() {
            Some(u) => u.to_string(),
            None => format!("{:.6}", n.as_f64()?),
        },
        _ => return None,
    };
    if text.is_empty() || text.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(text)
}

/// The values a claim offers to a claim rule: a string (split on
/// whitespace when the claim is named `scope`, RFC 8693 §4.2), each
/// element of an array, or a number/boolean as text.
fn offered(path: &[String], value: &Value) -> Vec<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::String(s) if path.last().is_some_and(|n| n == "scope") => {
            s.split_whitespace().map(str::to_owned).collect()
        }
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// Whether one token's claims satisfy `rule`: every listed claim is present
/// and offers at least one allowed value.
#[must_use]
pub fn satisfies(claims: &Map<String, Value>, rule: &ClaimRule) -> bool {
    rule.claims.iter().all(|(path, allowed)| {
        claim_at(claims, path).is_some_and(|value| {
            offered(path, value)
                .iter()
                .any(|v| allowed.iter().any(|a| a == v))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::PathMatch;
    use serde_json::json;

    fn rule(claims: &[(&str, &[&str])]) -> ClaimRule {
        ClaimRule {
            route: PathMatch::Prefix {
                prefix: "/".into(),
                case_sensitive: true,
            },
            claims: claims
                .iter()
                .map(|(n, v)| {
                    (
                        n.split('.').map(str::to_owned).collect(),
                        v.iter().map(|s| (*s).to_owned()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn header_values_render_like_jwt_authn() {
        assert_eq!(header_value(&json!("a")), Some("a".into()));
        assert_eq!(header_value(&json!(42)), Some("42".into()));
        assert_eq!(header_value(&json!(1.5)), Some("1.500000".into()));
        assert_eq!(header_value(&json!(-2)), Some("-2.000000".into()));
        assert_eq!(header_value(&json!(true)), Some("true".into()));
        assert_eq!(header_value(&json!(["a"])), None);
        assert_eq!(header_value(&json!("")), None);
        assert_eq!(header_value(&json!("a\r\nb: c")), None);
    }

    #[test]
    fn claim_rules_accept_strings_arrays_and_space_delimited_scope() {
        let claims =
            json!({"scope": "read write", "roles": ["admin", "dev"], "org": {"id": "7"}, "n": 3});
        let claims = claims.as_object().unwrap();
        assert!(satisfies(claims, &rule(&[("scope", &["write"])])));
        assert!(satisfies(
            claims,
            &rule(&[("roles", &["dev"]), ("org.id", &["7"]), ("n", &["3"])])
        ));
        assert!(!satisfies(claims, &rule(&[("roles", &["root"])])));
        assert!(!satisfies(claims, &rule(&[("missing", &["x"])])));
        let not_scope = json!({"role": "read write"});
        assert!(!satisfies(
            not_scope.as_object().unwrap(),
            &rule(&[("role", &["read"])])
        ));
    }
}
