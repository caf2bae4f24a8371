//! The fast path must agree with serde-saphyr on everything it accepts.

use proptest::prelude::*;

use super::super::raw;
use super::*;

fn saphyr(text: &str) -> Result<Vec<RouteIn<'static>>, String> {
    raw::parse::<raw::RawRoutesFile>(text, "f.yaml")
        .map(|f| f.routes.into_iter().map(Into::into).collect())
}

/// Fast result if any; it must equal serde-saphyr's, and reading the file
/// in any number of pieces must give the same result as reading it whole.
fn check(text: &str) -> Option<Vec<RouteIn<'_>>> {
    let whole = routes(text);
    for n in 2..=6 {
        let piecewise = pieces(text, n).and_then(|pieces| {
            let parsed: Option<Vec<Vec<RouteIn<'_>>>> = pieces.iter().map(Piece::routes).collect();
            parsed.map(|p| p.concat())
        });
        assert_eq!(piecewise, whole, "{n} pieces, input:\n{text}");
    }
    let fast = whole?;
    assert_eq!(Ok(fast.clone()), saphyr(text), "input:\n{text}");
    Some(fast)
}

#[test]
fn plain_layouts_take_the_fast_path_and_agree() {
    let accepted = [
        "routes:\n  - sni: a.ch.test\n    upstream: \"10.0.0.1:9440\"\n",
        "routes:\n- sni: a.ch.test\n  upstream: 10.0.0.1:9440\n",
        "# generated\nroutes: # all\n\n  -   name: ns/demo   # the demo\n      sni: [a.ch.test, \"*.a.ch.test\", 'b.ch.test']\n      upstream:\n        - host-1.svc:9440\n        # second\n        - '10.0.0.2'\n      allow: [10.0.0.0/8, \"::1\"]\n      proxy_protocol: V2\n  - sni: \"*\"\n    upstream: [x]\n    allow: []\n    proxy_protocol: 'off'\n",
        "routes:\n  - upstream: a\n    name: \"\"\n    sni: [ a.b , c.d ]\n",
        "routes:\n  - sni: UPPER.Example.COM.\n    upstream: \"[::1]:9440\"\n    allow:\n      - 1.2.3.4\n      - 10.0.0.0/8\n",
    ];
    for text in accepted {
        let got = check(text).unwrap_or_else(|| panic!("fast path refused:\n{text}"));
        assert!(!got.is_empty());
    }
    let refused = [
        "routes: []\n",
        "routes:\n",
        "---\nroutes:\n  - sni: a\n    upstream: b\n",
        "routes:\n  - sni: *.a\n    upstream: b\n",
        "routes:\n  - sni: &x a\n    upstream: *x\n",
        "routes:\n  - sni: a\n    upstream: b\n    extra: c\n",
        "routes:\n  - sni: a\n    sni: b\n    upstream: c\n",
        "routes:\n  - sni: a\n    upstream: b\n      c\n",
        "routes:\n  - sni: \"a\\x41\"\n    upstream: b\n",
        "routes:\n  - sni: 'it''s'\n    upstream: b\n",
        "routes:\n  - sni: a\n    upstream: b\n    proxy_protocol: false\n",
        "routes:\n  - sni: a\n    upstream: b\n    proxy_protocol: v3\n",
        "routes:\n  - name: yes\n    sni: a\n    upstream: b\n",
        "routes:\n  - name: 123\n    sni: a\n    upstream: b\n",
        "routes:\n  - name: 1.5\n    sni: a\n    upstream: b\n",
        "routes:\n  - name: ~\n    sni: a\n    upstream: b\n",
        "routes:\n  - name:\n    sni: a\n    upstream: b\n",
        "routes:\n  - sni: a\n    upstream: b\n    allow: 10.0.0.0/8\n",
        "routes:\n  - sni: a\n    upstream: [b,\n      c]\n",
        "routes:\n\t- sni: a\n",
        "routes:\r\n  - sni: a\r\n    upstream: b\r\n",
        "routes:\n  - sni: a#b\n    upstream: c\n",
        "routes:\n  - sni: a b\n    upstream: c\n",
        "routes:\n  - sni: é.test\n    upstream: c\n",
        "routes:\n  - sni: a\n    upstream: c\nroutes:\n  - sni: b\n    upstream: c\n",
        "listeners: []\nroutes:\n  - sni: a\n    upstream: c\n",
        "routes:\n  -\n    sni: a\n    upstream: c\n",
    ];
    for text in refused {
        assert_eq!(routes(text), None, "fast path accepted:\n{text}");
    }
}

fn scalar_text() -> impl Strategy<Value = String> {
    let plain = prop_oneof![
        Just("a.ch.test"),
        Just("10.1.2.3"),
        Just("10.1.2.3:9440"),
        Just("10.0.0.0/8"),
        Just("host-1.ns.svc:9440"),
        Just("\"*.ch.test\""),
        Just("'x.ch.test'"),
        Just("\"[::1]:9440\""),
        Just("\"\""),
        Just("v2"),
        Just("OFF"),
        Just("ns/demo_1"),
    ];
    let tricky = prop_oneof![
        Just("*.a"),
        Just("yes"),
        Just("Off"),
        Just("v1"),
        Just("null"),
        Just("~"),
        Just("123"),
        Just("1.5"),
        Just("1e3"),
        Just("0x1f"),
        Just("12:30"),
        Just("2001-12-14"),
        Just("a: b"),
        Just("a:b"),
        Just("a b"),
        Just("a #c"),
        Just("\"q\\\"\""),
        Just("'it''s'"),
        Just("-a"),
        Just("a,b"),
        Just("[a"),
        Just("{a: b}"),
        Just("!tag a"),
        Just("|"),
        Just("\"a\tb\""),
        Just("\"é\""),
        Just("&a x"),
    ];
    prop_oneof![20 => plain, 1 => tricky].prop_map(str::to_owned)
}

fn value(indent: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        40 => scalar_text().prop_map(|s| format!(" {s}")),
        30 => prop::collection::vec(scalar_text(), 0..3).prop_map(|v| format!(" [{}]", v.join(", "))),
        30 => (prop::collection::vec(scalar_text(), 1..3), 1..3usize).prop_map(move |(v, extra)| {
            v.iter()
                .map(|s| format!("\n{}- {s}", " ".repeat(indent + extra)))
                .collect()
        }),
        1 => Just(String::new()),
        1 => Just(" # c".to_owned()),
    ]
}

fn route(item_indent: usize) -> impl Strategy<Value = String> {
    (0..2usize).prop_flat_map(move |extra| {
        let key_indent = item_indent + 2 + extra;
        let keys = ["name", "sni", "upstream", "allow", "proxy_protocol"];
        // Mostly distinct known keys; sometimes a repeat or an unknown one.
        let key = prop_oneof![
            30 => Just(None),
            1 => Just(Some("sni")),
            1 => Just(Some("other")),
        ];
        let fields = (
            Just(keys.to_vec()).prop_shuffle(),
            1..6usize,
            key,
            prop::collection::vec(value(key_indent), 6),
        );
        fields.prop_map(move |(mut keys, n, odd, values)| {
            keys.truncate(n);
            keys.extend(odd);
            let fields = keys.into_iter().zip(values);
            let mut s = format!("{}- {}", " ".repeat(item_indent), " ".repeat(extra));
            for (i, (k, v)) in fields.enumerate() {
                if i > 0 {
                    s.push('\n');
                    s.push_str(&" ".repeat(key_indent));
                }
                s.push_str(&format!("{k}:{v}"));
            }
            s
        })
    })
}

/// What separates two route items: blank and comment lines, at any column
/// (non-ASCII too: a piece boundary must still fall between characters).
fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        20 => Just("\n"),
        1 => Just("\n\n"),
        1 => Just("\n  # next: - sni: x\n"),
        1 => Just("\n# é ü\n"),
        1 => Just("\n- sni: at column 0\n"),
    ]
}

fn file() -> impl Strategy<Value = String> {
    (0..3usize, any::<bool>()).prop_flat_map(|(indent, comment)| {
        prop::collection::vec((route(indent * 2), separator()), 1..6).prop_map(move |routes| {
            let head = if comment {
                "# gen\nroutes:  # x\n"
            } else {
                "routes:\n"
            };
            let mut text = head.to_owned();
            for (route, sep) in routes {
                text.push_str(&route);
                text.push_str(sep);
            }
            text
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_serde_saphyr(text in file()) {
        check(&text);
    }
}

#[test]
fn a_big_file_splits_into_pieces_at_route_items() {
    let mut text = "# generated\nroutes:\n".to_owned();
    for k in 0..1000 {
        text.push_str(&format!(
            "  - sni: r{k}.ch.test # é\n    upstream:\n      - \"10.0.{}.{}:9440\"\n\n",
            k / 256,
            k % 256
        ));
    }
    let whole = routes(&text).expect("plain");
    assert_eq!(whole.len(), 1000);
    let last = whole.last().unwrap();
    assert_eq!(
        (last.line, last.sni.as_ref().unwrap()[0].line),
        (3 + 999 * 4, 3 + 999 * 4)
    );
    for n in [2, 3, 4, 7] {
        let pieces = pieces(&text, n).unwrap();
        assert_eq!(pieces.len(), n);
        let parsed: Vec<Vec<RouteIn<'_>>> = pieces.iter().map(|p| p.routes().unwrap()).collect();
        assert!(parsed.iter().all(|p| p.len() > 1000 / n / 2), "balanced");
        assert_eq!(parsed.concat(), whole);
    }
}
