//! Forms: a urlencoded body as pairs, and Intercom > Call Feature (the
//! `calls` section) between its form fields and its JSON. What was typed is
//! kept as typed, so a refused form shows it again; what is a number is sent
//! as one, anything else as the text it is, for the config service to judge.

use serde_json::{Map, Value, json};

/// A form body's pairs (none for a body that is not a form).
pub fn pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// The first value of `name`.
pub fn one<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A whole number typed as a number, anything else as the text it is (for
/// the config service to judge).
pub fn number(text: &str) -> Value {
    text.parse::<u64>()
        .map_or_else(|_| Value::String(text.to_owned()), Value::from)
}

/// A number field: its key under `calls`, the form's constraints (the
/// config service's ranges), what it holds, and the refusal beside it.
pub struct Number {
    pub key: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub min: u32,
    pub max: u32,
    pub value: String,
    pub error: Option<String>,
}

const NUMBERS: [(&str, &str, &str, u32, u32); 5] = [
    (
        "max_call_time",
        "Max call time (s)",
        "0 (no limit) or 5-7200",
        0,
        7200,
    ),
    ("max_dial_in_time", "Max dial-in time (s)", "5-300", 5, 300),
    (
        "max_dial_out_time",
        "Max dial-out time (s)",
        "5-300",
        5,
        300,
    ),
    ("auto_answer.delay", "Auto-answer delay (s)", "0-30", 0, 30),
    (
        "hang_up_after_open.timeout",
        "Hang up after opening: time-out (s)",
        "1-15",
        1,
        15,
    ),
];

/// Door-open sources the hang-up-after-opening rule may cover.
const TYPES: [&str; 3] = ["dtmf", "api", "input"];

pub struct CallFeature {
    pub numbers: Vec<Number>,
    pub auto_ip: bool,
    pub auto_sip: bool,
    pub mode: String,
    pub types: Vec<(&'static str, bool)>,
    /// A refusal that names no field of the form.
    pub other_error: Option<String>,
}

/// `calls.a.b` read from the section's JSON.
fn at<'v>(calls: &'v Value, key: &str) -> &'v Value {
    key.split('.').fold(calls, |v, k| &v[k])
}

impl CallFeature {
    /// The form of the stored `calls` section.
    pub fn from_calls(calls: &Value) -> CallFeature {
        let types = at(calls, "hang_up_after_open.types");
        CallFeature {
            numbers: NUMBERS
                .iter()
                .map(|&(key, label, hint, min, max)| Number {
                    key,
                    label,
                    hint,
                    min,
                    max,
                    value: at(calls, key).to_string(),
                    error: None,
                })
                .collect(),
            auto_ip: at(calls, "auto_answer.ip") == &Value::Bool(true),
            auto_sip: at(calls, "auto_answer.sip") == &Value::Bool(true),
            mode: at(calls, "auto_answer.mode")
                .as_str()
                .unwrap_or("audio")
                .to_owned(),
            types: TYPES
                .iter()
                .map(|t| {
                    let on = types.as_array().is_some_and(|a| a.iter().any(|v| v == t));
                    (*t, on)
                })
                .collect(),
            other_error: None,
        }
    }

    /// The form as submitted.
    pub fn from_form(pairs: &[(String, String)]) -> CallFeature {
        CallFeature {
            numbers: NUMBERS
                .iter()
                .map(|&(key, label, hint, min, max)| Number {
                    key,
                    label,
                    hint,
                    min,
                    max,
                    value: one(pairs, key).unwrap_or_default().trim().to_owned(),
                    error: None,
                })
                .collect(),
            auto_ip: one(pairs, "auto_answer.ip").is_some(),
            auto_sip: one(pairs, "auto_answer.sip").is_some(),
            mode: one(pairs, "auto_answer.mode")
                .unwrap_or_default()
                .to_owned(),
            types: TYPES
                .iter()
                .map(|t| {
                    let on = pairs
                        .iter()
                        .any(|(k, v)| k == "hang_up_after_open.types" && v == t);
                    (*t, on)
                })
                .collect(),
            other_error: None,
        }
    }

    /// The `calls` section this form describes.
    pub fn to_calls(&self) -> Value {
        let mut calls = json!({
            "auto_answer": {"ip": self.auto_ip, "sip": self.auto_sip, "mode": self.mode},
            "hang_up_after_open": {
                "types": self.types.iter().filter(|(_, on)| *on).map(|(t, _)| *t).collect::<Vec<_>>(),
            },
        });
        for n in &self.numbers {
            let value = number(&n.value);
            let mut parts: Vec<&str> = n.key.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let mut object = &mut calls;
            for part in parts {
                object = &mut object[part];
            }
            if let Value::Object(map) = object {
                map.insert(last.to_owned(), value);
            } else {
                let mut map = Map::new();
                map.insert(last.to_owned(), value);
                *object = Value::Object(map);
            }
        }
        calls
    }

    /// Puts the config service's refusal beside the field it names.
    pub fn refused(&mut self, field: Option<&str>, message: String) {
        let key = field.and_then(|f| f.strip_prefix("calls."));
        match self.numbers.iter_mut().find(|n| Some(n.key) == key) {
            Some(number) => number.error = Some(message),
            None => self.other_error = Some(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({
            "max_call_time": 300, "max_dial_in_time": 60, "max_dial_out_time": 60,
            "auto_answer": {"ip": true, "sip": false, "delay": 0, "mode": "video"},
            "hang_up_after_open": {"types": ["api"], "timeout": 5}
        })
    }

    #[test]
    fn the_stored_section_survives_the_form() {
        let form = CallFeature::from_calls(&stored());
        let pairs: Vec<(String, String)> = form
            .numbers
            .iter()
            .map(|n| (n.key.to_owned(), n.value.clone()))
            .chain([
                ("auto_answer.ip".to_owned(), "on".to_owned()),
                ("auto_answer.mode".to_owned(), "video".to_owned()),
                ("hang_up_after_open.types".to_owned(), "api".to_owned()),
            ])
            .collect();
        assert_eq!(CallFeature::from_form(&pairs).to_calls(), stored());
    }

    #[test]
    fn what_is_typed_is_kept_and_the_refusal_goes_beside_its_field() {
        let pairs = pairs(b"max_call_time=4&max_dial_in_time=abc&csrf=x");
        let mut form = CallFeature::from_form(&pairs);
        let calls = form.to_calls();
        assert_eq!(calls["max_call_time"], 4);
        assert_eq!(calls["max_dial_in_time"], "abc");
        form.refused(Some("calls.max_call_time"), "4 is out of range".into());
        assert_eq!(form.numbers[0].value, "4");
        assert_eq!(form.numbers[0].error.as_deref(), Some("4 is out of range"));
        form.refused(Some("accounts"), "other".into());
        assert_eq!(form.other_error.as_deref(), Some("other"));
    }

    #[test]
    fn a_body_that_is_no_form_has_no_pairs() {
        assert!(pairs(b"%zz=&&=").iter().all(|(k, _)| k != "csrf"));
        assert_eq!(one(&pairs(b"a=1&a=2"), "a"), Some("1"));
    }
}
