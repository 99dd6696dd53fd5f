//! A small JSON Schema validator for the documented JSON outputs: it knows
//! only the keywords our schemas use and refuses any other, records which
//! nullable locations were seen null and set, and which keys serde emitted
//! for each object, so a test can prove its data covers the schema.
//!
//! It is the validator of tests/report_schema.rs, moved here so that every
//! schema test can share it (src/states/schema_tests.rs includes it for
//! docs/states.schema.json and docs/sysctl.schema.json, and
//! tests/report_schema.rs for docs/report.schema.json).
//!
//! Used with `#[path = ".../tests/support/schema.rs"] mod schema;`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "enum",
    "const",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
];

#[derive(Default)]
pub struct Seen {
    /// Schema location of a nullable value -> (seen null, seen non-null).
    pub nullable: BTreeMap<String, (bool, bool)>,
    /// Schema location of an object with properties -> keys serde emitted.
    pub keys: BTreeMap<String, BTreeSet<String>>,
}

pub struct Validator<'a> {
    root: &'a Value,
    pub seen: Seen,
}

fn as_i128(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("unknown type {other:?} in the schema"),
    }
}

impl<'a> Validator<'a> {
    pub fn new(root: &'a Value) -> Self {
        Validator {
            root,
            seen: Seen::default(),
        }
    }

    pub fn resolve(&self, r: &str) -> &'a Value {
        let name = r
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("only local $defs refs are supported: {r}"));
        self.root
            .get("$defs")
            .and_then(|d| d.get(name))
            .unwrap_or_else(|| panic!("dangling $ref {r}"))
    }

    fn nullable(&mut self, loc: &str, v: &Value) {
        let e = self.seen.nullable.entry(loc.to_string()).or_default();
        if v.is_null() {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }

    /// Validate `v` (at JSON path `path`) against `schema` (at `loc`).
    fn check(
        &mut self,
        schema: &'a Value,
        loc: &str,
        v: &Value,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let m = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{path}: not allowed here")),
            Value::Object(m) => m,
            other => panic!("{loc}: a schema must be an object or a boolean, not {other}"),
        };
        for k in m.keys() {
            assert!(
                KEYWORDS.contains(&k.as_str()),
                "{loc}: keyword {k:?} is not supported by this validator"
            );
        }
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(r);
            self.check(target, r, v, path, errors);
        }
        if let Some(ty) = m.get("type") {
            let types: Vec<&str> = match ty {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                other => panic!("{loc}: bad type {other}"),
            };
            if types.contains(&"null") {
                self.nullable(loc, v);
            }
            if !types.iter().any(|t| type_matches(t, v)) {
                errors.push(format!("{path}: {v} is not of type {types:?}"));
                return;
            }
        }
        if let Some(branches) = m.get("anyOf").and_then(Value::as_array) {
            if branches
                .iter()
                .any(|b| b.get("type") == Some(&json!("null")))
            {
                self.nullable(loc, v);
            }
            let ok = branches.iter().enumerate().any(|(i, b)| {
                let mut e = Vec::new();
                self.check(b, &format!("{loc}/anyOf/{i}"), v, path, &mut e);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{path}: {v} matches no branch of anyOf at {loc}"));
            }
        }
        if let Some(list) = m.get("enum").and_then(Value::as_array) {
            if !list.contains(v) {
                errors.push(format!("{path}: {v} is not one of {list:?}"));
            }
        }
        if let Some(c) = m.get("const") {
            if c != v {
                errors.push(format!("{path}: {v} is not {c}"));
            }
        }
        if let (Some(min), Some(n)) = (m.get("minimum").and_then(as_i128), as_i128(v)) {
            if n < min {
                errors.push(format!("{path}: {n} < minimum {min}"));
            }
        }
        if let (Some(max), Some(n)) = (m.get("maximum").and_then(as_i128), as_i128(v)) {
            if n > max {
                errors.push(format!("{path}: {n} > maximum {max}"));
            }
        }
        if let Some(obj) = v.as_object() {
            self.check_object(m, loc, obj, path, errors);
        }
        if let Some(arr) = v.as_array() {
            self.check_array(m, loc, arr, path, errors);
        }
    }

    fn check_object(
        &mut self,
        m: &'a serde_json::Map<String, Value>,
        loc: &str,
        obj: &serde_json::Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let props = m.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            self.seen
                .keys
                .entry(loc.to_string())
                .or_default()
                .extend(obj.keys().cloned());
            for (k, sub) in props {
                if let Some(val) = obj.get(k) {
                    self.check(
                        sub,
                        &format!("{loc}/properties/{k}"),
                        val,
                        &format!("{path}.{k}"),
                        errors,
                    );
                }
            }
        }
        for r in m
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                errors.push(format!("{path}: required field {r:?} is missing"));
            }
        }
        for (k, val) in obj {
            if props.is_some_and(|p| p.contains_key(k)) {
                continue;
            }
            match m.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    errors.push(format!("{path}: field {k:?} is not in the schema"))
                }
                Some(sub) => self.check(
                    sub,
                    &format!("{loc}/additionalProperties"),
                    val,
                    &format!("{path}.{k}"),
                    errors,
                ),
                None => {}
            }
            if let Some(names) = m.get("propertyNames") {
                self.check(
                    names,
                    &format!("{loc}/propertyNames"),
                    &json!(k),
                    &format!("{path} key {k:?}"),
                    errors,
                );
            }
        }
    }

    fn check_array(
        &mut self,
        m: &'a serde_json::Map<String, Value>,
        loc: &str,
        arr: &[Value],
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let prefix = m
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, (sub, val)) in prefix.iter().zip(arr).enumerate() {
            self.check(
                sub,
                &format!("{loc}/prefixItems/{i}"),
                val,
                &format!("{path}[{i}]"),
                errors,
            );
        }
        if let Some(items) = m.get("items") {
            for (i, val) in arr.iter().enumerate().skip(prefix.len()) {
                self.check(
                    items,
                    &format!("{loc}/items"),
                    val,
                    &format!("{path}[{i}]"),
                    errors,
                );
            }
        }
        if let Some(min) = m.get("minItems").and_then(Value::as_u64) {
            if (arr.len() as u64) < min {
                errors.push(format!("{path}: fewer than {min} items"));
            }
        }
        if let Some(max) = m.get("maxItems").and_then(Value::as_u64) {
            if arr.len() as u64 > max {
                errors.push(format!("{path}: more than {max} items"));
            }
        }
    }

    pub fn validate(&mut self, v: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(self.root, "#", v, "$", &mut errors);
        errors
    }
}

/// Every location in the schema that holds a nullable value, and every
/// object schema with properties, found by walking it.
pub fn schema_locations(
    schema: &Value,
    loc: &str,
    nullable: &mut BTreeSet<String>,
    objects: &mut BTreeSet<String>,
) {
    let Some(m) = schema.as_object() else { return };
    let null_type = m
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|t| t.contains(&json!("null")));
    let null_branch = m
        .get("anyOf")
        .and_then(Value::as_array)
        .is_some_and(|b| b.iter().any(|b| b.get("type") == Some(&json!("null"))));
    if null_type || null_branch {
        nullable.insert(loc.to_string());
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        objects.insert(loc.to_string());
        for (k, sub) in props {
            schema_locations(sub, &format!("{loc}/properties/{k}"), nullable, objects);
        }
    }
    if let Some(defs) = m.get("$defs").and_then(Value::as_object) {
        for (k, sub) in defs {
            schema_locations(sub, &format!("#/$defs/{k}"), nullable, objects);
        }
    }
}

/// Every nullable location of `schema` was seen both null and set, and every
/// object schema lists exactly (and requires) the fields serde emitted.
pub fn assert_covered(schema: &Value, v: &Validator, file: &str) {
    let (mut nullable, mut objects) = (BTreeSet::new(), BTreeSet::new());
    schema_locations(schema, "#", &mut nullable, &mut objects);
    for loc in &nullable {
        let seen = v.seen.nullable.get(loc).copied().unwrap_or_default();
        assert_eq!(
            seen,
            (true, true),
            "{file} {loc}: test data must have it both null and set (seen null, set)"
        );
    }
    for loc in &objects {
        let node = if loc == "#" { schema } else { v.resolve(loc) };
        let props: BTreeSet<String> = node["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let required: BTreeSet<String> = node["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            required, props,
            "{file} {loc}: required must list every property"
        );
        assert_eq!(
            node["additionalProperties"],
            json!(false),
            "{file} {loc}: must forbid unknown fields"
        );
        let keys = v
            .seen
            .keys
            .get(loc)
            .unwrap_or_else(|| panic!("{file} {loc}: the test data never emits it"));
        assert_eq!(
            keys, &props,
            "{file} {loc}: serde emits these fields, the schema lists others"
        );
    }
}
