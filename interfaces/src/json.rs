//! Conversion between JSON values and D-Bus variants, for the by-path `Get`/`Set`
//! of configuration values: numbers become `x` (or `d`), strings `s`, lists of
//! strings `as`, other lists `av`, objects `a{sv}`.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use zbus::Variant;

/// The variant that carries `value`. `null` has no D-Bus form and is refused.
pub fn to_variant(value: &Value) -> Result<Variant<'static>, String> {
    Ok(match value {
        Value::Null => return Err("null has no D-Bus value".to_owned()),
        Value::Bool(b) => Variant::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Variant::I64(i),
            (None, Some(u), _) => Variant::U64(u),
            (None, None, Some(f)) => Variant::F64(f),
            _ => return Err(format!("{n} has no D-Bus value")),
        },
        Value::String(s) => Variant::from(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Variant::from(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<String>>(),
        ),
        Value::Array(items) => Variant::from(
            items
                .iter()
                .map(to_variant)
                .collect::<Result<Vec<Variant<'static>>, String>>()?,
        ),
        Value::Object(map) => Variant::from(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_variant(v)?)))
                .collect::<Result<HashMap<String, Variant<'static>>, String>>()?,
        ),
    })
}

/// The JSON form of a variant, for any D-Bus type but file descriptors.
pub fn from_variant(value: &Variant<'_>) -> Result<Value, String> {
    Ok(match value {
        Variant::U8(v) => Value::from(*v),
        Variant::Bool(v) => Value::Bool(*v),
        Variant::I16(v) => Value::from(*v),
        Variant::U16(v) => Value::from(*v),
        Variant::I32(v) => Value::from(*v),
        Variant::U32(v) => Value::from(*v),
        Variant::I64(v) => Value::from(*v),
        Variant::U64(v) => Value::from(*v),
        Variant::F64(v) => Number::from_f64(*v)
            .map(Value::Number)
            .ok_or_else(|| format!("{v} is not a JSON number"))?,
        Variant::Str(s) => Value::String(s.as_str().to_owned()),
        Variant::Signature(s) => Value::String(s.to_string()),
        Variant::ObjectPath(p) => Value::String(p.as_str().to_owned()),
        Variant::Variant(inner) => from_variant(inner)?,
        Variant::Array(array) => Value::Array(
            array
                .inner()
                .iter()
                .map(from_variant)
                .collect::<Result<_, _>>()?,
        ),
        Variant::Dict(dict) => {
            let mut map = Map::new();
            for (k, v) in dict.iter() {
                let key = match from_variant(k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, from_variant(v)?);
            }
            Value::Object(map)
        }
        Variant::Structure(s) => Value::Array(
            s.fields()
                .iter()
                .map(from_variant)
                .collect::<Result<_, _>>()?,
        ),
        #[cfg(unix)]
        Variant::Fd(_) => return Err("a file descriptor has no JSON form".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_a_trip_through_a_variant() {
        for value in [
            json!(300),
            json!(-1),
            json!(true),
            json!("486"),
            json!(["dtmf", "api"]),
            json!([]),
            json!([{"address": "239.1.1.1", "port": 5000, "label": "Lobby"}]),
            json!({"enabled": true, "port": 5060}),
            json!([10000, 20000]),
        ] {
            let variant = to_variant(&value).unwrap();
            assert_eq!(from_variant(&variant).unwrap(), value, "{value}");
        }
    }
}
