//! The helpers below the entry points: Go's number printing, formats, CEL names and paths.

use serde_json::json;

use crate::crd_schema::{cel, format, report};

#[test]
fn floats_print_as_go_prints_them() {
    let cases = [(1.0, "1"), (1.5, "1.5"), (100000.0, "100000"), (1e6, "1e+06"), (1234567.0, "1.234567e+06")];
    for (f, want) in cases {
        assert_eq!(report::go_float(f), want);
    }
    assert_eq!(report::go_float(0.0001), "0.0001");
    assert_eq!(report::go_float(0.00001), "1e-05");
    assert_eq!(report::go_float(-2.5), "-2.5");
}

#[test]
fn bad_values_print_as_kube_prints_them() {
    assert_eq!(report::shown(&json!("x")), "\"x\"");
    assert_eq!(report::shown(&json!(3)), "3");
    assert_eq!(report::shown(&json!(null)), "\"null\"");
    assert_eq!(report::shown(&json!({"a": 1})), "{\"a\":1}");
}

#[test]
fn more_formats() {
    let good = [
        ("mac", "01:23:45:67:89:ab"),
        ("duration", "1h30m"),
        ("duration", "3 days"),
        ("quantity", "500Mi"),
        ("quantity", "1.5"),
        ("k8s-short-name", "my-name"),
        ("k8s-long-name", "a.b-c.d"),
        ("isbn13", "978-0321751041"),
        ("isbn10", "0321751043"),
        ("hexcolor", "#FFF"),
        ("uri", "https://example.com/x"),
        ("date-time", "2024-01-02T03:04:05.123+01:00"),
    ];
    for (f, v) in good {
        assert_eq!(format::check(f, v), Some(true), "{f} {v}");
    }
    let bad = [
        ("mac", "01:23"),
        ("duration", "soon"),
        ("quantity", "5 apples"),
        ("k8s-short-name", "My_Name"),
        ("isbn10", "0321751044"),
        ("uri", "not a uri"),
        ("date", "２０２４-01-02"),
        ("date-time", "2024-13-02T03:04:05Z"),
    ];
    for (f, v) in bad {
        assert_eq!(format::check(f, v), Some(false), "{f} {v}");
    }
    assert_eq!(format::check("int32", "x"), None);
}

#[test]
fn property_names_escape_as_kube_escapes_them() {
    assert_eq!(cel::escape("x-y.z/w").as_deref(), Some("x__dash__y__dot__z__slash__w"));
    assert_eq!(cel::escape("a__b").as_deref(), Some("a__underscores__b"));
    assert_eq!(cel::escape("namespace").as_deref(), Some("__namespace__"));
    assert_eq!(cel::escape("1st"), None);
    assert_eq!(cel::escape("a b"), None);
}

#[test]
fn rule_field_paths_resolve_below_the_node() {
    assert_eq!(cel::field_path("spec", ".a.b").as_deref(), Some("spec.a.b"));
    assert_eq!(cel::field_path("spec", "['x.y'].z").as_deref(), Some("spec[x.y].z"));
    assert_eq!(cel::field_path("", ".list[2]").as_deref(), Some("list[2]"));
    assert_eq!(cel::field_path("spec", "a"), None);
    assert_eq!(cel::field_path("spec", ".a["), None);
}
