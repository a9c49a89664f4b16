//! The tables of custom resources, as kube-apiserver's CRD table convertor builds them:
//! `Name`, then the served version's `additionalPrinterColumns` (all of them, with their
//! priority: kubectl hides priority > 0 but for `-o wide`), or `Age` when it lists none.
//! Cells come from each column's JSONPath ([`super::jsonpath`]): `string` columns print what
//! it finds as kubectl's JSONPath does, `date` columns the age of the timestamp, `integer`,
//! `number` and `boolean` columns the typed value; nothing found is `null`.

use actors::custom_kinds;
use actors::kinds::ResourceKind;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::jsonpath::JsonPath;
use super::{human_duration, name, parse_time, CREATED_DOC, NAME};

/// One printer column of a CRD version.
#[derive(Debug, Clone)]
struct CustomColumn {
    name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    ty: String,
    format: String,
    description: String,
    priority: i64,
    /// `None` when the CRD's `jsonPath` does not parse: every cell is `null`.
    path: Option<JsonPath>,
}

/// The columns of one custom kind's version and how to fill them.
#[derive(Debug, Clone)]
pub(super) struct CustomPrinter {
    columns: Vec<CustomColumn>,
}

impl CustomPrinter {
    /// The printer of `kind` when it is a served version of a custom resource.
    pub(super) fn of(kind: &ResourceKind) -> Option<CustomPrinter> {
        let custom = custom_kinds::of(kind)?;
        let version = custom.version(kind.version)?;
        Some(CustomPrinter::from_columns(&version.printer_columns))
    }

    /// The printer of `additionalPrinterColumns` as written in a CRD version; with none, kube's
    /// default: `Age` from `.metadata.creationTimestamp`.
    pub(super) fn from_columns(columns: &[Value]) -> CustomPrinter {
        if columns.is_empty() {
            let age = json!({"name": "Age", "type": "date", "description": CREATED_DOC,
                "jsonPath": ".metadata.creationTimestamp"});
            return CustomPrinter::from_columns(std::slice::from_ref(&age));
        }
        let columns = columns
            .iter()
            .map(|c| {
                let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                let json_path = text("jsonPath");
                let description = match text("description") {
                    d if d.is_empty() => format!("Custom resource definition column (in JSONPath format): {json_path}"),
                    d => d,
                };
                CustomColumn {
                    name: text("name"),
                    ty: text("type"),
                    format: text("format"),
                    description,
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    path: JsonPath::parse(&json_path).ok(),
                }
            })
            .collect();
        CustomPrinter { columns }
    }

    /// The Table's `columnDefinitions`: `Name`, then the CRD's columns.
    pub(super) fn column_definitions(&self) -> Value {
        let mut out = vec![NAME.to_json()];
        out.extend(self.columns.iter().map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        }));
        Value::Array(out)
    }

    /// One object's cells.
    pub(super) fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let mut cells = vec![name(obj)];
        cells.extend(self.columns.iter().map(|c| cell(c, obj, now)));
        cells
    }
}

fn cell(column: &CustomColumn, obj: &Value, now: OffsetDateTime) -> Value {
    let Some(path) = &column.path else { return Value::Null };
    let Ok(found) = path.find(obj) else { return Value::Null };
    let Some(value) = found.first() else { return Value::Null };
    match column.ty.as_str() {
        "string" => Value::String(go_text(value)),
        "integer" => match value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map_or(Value::Null, Value::from),
            _ => Value::Null,
        },
        "number" => match value {
            Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
            _ => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match value {
            Value::String(s) if s.is_empty() || s == "null" => json!("<unknown>"),
            Value::String(s) => match parse_time(s) {
                Some(at) => json!(human_duration(now - at)),
                None => json!("<invalid>"),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// A value as kubectl's JSONPath prints it: strings as they are, numbers and booleans as Go's
/// `fmt` does, objects and lists as compact JSON (keys sorted, `<>&` escaped as Go's
/// `encoding/json` does), `null` as `<no value>`.
fn go_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        other => other
            .to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form (`1e+06`, `1.5e-05`) when the
/// exponent is below -4 or at least 6.
fn go_float(f: f64) -> String {
    let scientific = format!("{f:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else { return f.to_string() };
    let Ok(exponent) = exponent.parse::<i32>() else { return f.to_string() };
    if (-4..6).contains(&exponent) {
        return f.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use actors::kinds;

    use super::super::{of_list, of_object, IncludeObject, TableOptions};
    use super::*;
    use crate::discovery::test_support::LoadTests;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn values_print_as_kubectl_jsonpath_prints_them() {
        assert_eq!(go_text(&json!("x")), "x");
        assert_eq!(go_text(&json!(3)), "3");
        assert_eq!(go_text(&json!(0.5)), "0.5");
        assert_eq!(go_text(&json!(1_000_000.0)), "1e+06");
        assert_eq!(go_text(&json!(123_456.0)), "123456");
        assert_eq!(go_text(&json!(0.00001)), "1e-05");
        assert_eq!(go_text(&json!(-2.5e10)), "-2.5e+10");
        assert_eq!(go_text(&json!(true)), "true");
        assert_eq!(go_text(&Value::Null), "<no value>");
        assert_eq!(go_text(&json!({"b": [1, "<a>"], "a": {}})), r#"{"a":{},"b":[1,"\u003ca\u003e"]}"#);
    }

    #[test]
    fn typed_columns_convert_or_leave_the_cell_empty() {
        let columns = [
            json!({"name": "I", "type": "integer", "jsonPath": ".v"}),
            json!({"name": "N", "type": "number", "jsonPath": ".v"}),
            json!({"name": "B", "type": "boolean", "jsonPath": ".v"}),
            json!({"name": "D", "type": "date", "jsonPath": ".v"}),
            json!({"name": "S", "type": "string", "jsonPath": ".v"}),
        ];
        let printer = CustomPrinter::from_columns(&columns);
        let cells = |v: Value| printer.cells(&json!({"metadata": {"name": "o"}, "v": v}), now())[1..].to_vec();
        assert_eq!(cells(json!(2.7)), [json!(2), json!(2.7), Value::Null, Value::Null, json!("2.7")]);
        assert_eq!(cells(json!(true)), [Value::Null, Value::Null, json!(true), Value::Null, json!("true")]);
        let created = (now() - time::Duration::minutes(5)).format(&time::format_description::well_known::Rfc3339);
        let created = created.unwrap();
        assert_eq!(cells(json!(created))[3], "5m");
        assert_eq!(cells(json!("yesterday"))[3], "<invalid>");
        assert_eq!(cells(json!(""))[3], "<unknown>");
        let missing = printer.cells(&json!({"metadata": {"name": "o"}}), now());
        assert_eq!(missing, [json!("o"), Value::Null, Value::Null, Value::Null, Value::Null, Value::Null]);
    }

    #[test]
    fn custom_kinds_print_their_crd_columns_or_name_and_age() {
        let group = "tables.custom.example.com";
        let load_tests = LoadTests::register(group);
        let v1 = kinds::find(group, "v1", "loadtests").unwrap();
        assert!(super::super::has_printer(v1));
        let created = (now() - time::Duration::minutes(5)).format(&time::format_description::well_known::Rfc3339);
        let object = |name: &str, ready: &str| {
            json!({
                "apiVersion": format!("{group}/v1"), "kind": "LoadTest",
                "metadata": {"name": name, "creationTimestamp": created.as_ref().unwrap(), "resourceVersion": "7"},
                "spec": {"url": "http://example.com", "requestsPerSecond": 40},
                "status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": ready}]},
            })
        };
        let list = json!({"kind": "LoadTestList", "metadata": {"resourceVersion": "9"},
            "items": [object("a", "True"), object("b", "False")]});
        let opts = TableOptions { version: "v1", include: IncludeObject::None };
        let table = of_list(v1, &list, &opts, now());
        let columns: Vec<(&Value, &Value, &Value)> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (&c["name"], &c["type"], &c["priority"]))
            .collect();
        assert_eq!(
            columns,
            [
                (&json!("Name"), &json!("string"), &json!(0)),
                (&json!("URL"), &json!("string"), &json!(0)),
                (&json!("RPS"), &json!("integer"), &json!(0)),
                (&json!("Ready"), &json!("string"), &json!(1)),
                (&json!("Age"), &json!("date"), &json!(0)),
            ]
        );
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["columnDefinitions"][2]["description"], "Requests per second");
        assert_eq!(
            table["columnDefinitions"][1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.url"
        );
        assert_eq!(table["rows"][0]["cells"], json!(["a", "http://example.com", 40, "True", "5m"]));
        assert_eq!(table["rows"][1]["cells"], json!(["b", "http://example.com", 40, "False", "5m"]));
        assert_eq!(table["metadata"]["resourceVersion"], "9");

        // No printer columns: kube's default, Name and Age.
        let v2 = kinds::find(group, "v2", "loadtests").unwrap();
        let table = of_object(v2, &object("a", "True"), &opts, now());
        let names: Vec<&Value> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
        assert_eq!(names, [&json!("Name"), &json!("Age")]);
        assert_eq!(table["columnDefinitions"][1]["type"], "date");
        assert_eq!(table["rows"][0]["cells"], json!(["a", "5m"]));

        drop(load_tests);
        assert!(!super::super::has_printer(v1), "gone with its CRD: the default table");
        assert_eq!(of_object(v1, &object("a", "True"), &opts, now())["columnDefinitions"][1]["name"], "Created At");
    }
}
