//! Head parse + route decision for the seed's host table (criterion). Targets live in the
//! issue that owns performance; this bench gives the number to compare against.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use vipgate::proxy::http1::request;
use vipgate::proxy::route::RouteTable;

const SEED: &str = r#"
[[listener]]
bind = "0.0.0.0:80"
[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"
[[host]]
names = ["monitoring.example.test"]
[[host.route]]
prefix = "/"
pool = "grafana"
[[host]]
names = ["argocd.example.test"]
[[host.route]]
prefix = "/"
pool = "argocd"
[[host]]
names = ["kiali.example.test"]
[[host.route]]
prefix = "/"
pool = "kiali"
[pool.web]
backends = ["192.0.2.21:8080"]
[pool.was]
backends = ["192.0.2.23:8080"]
[pool.grafana]
backends = ["192.0.2.24:3000"]
[pool.argocd]
backends = ["192.0.2.25:80"]
[pool.kiali]
backends = ["192.0.2.26:20001"]
"#;

const REQUEST: &[u8] = b"GET /api/posts?page=2 HTTP/1.1\r\nHost: blog.example.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nCF-Connecting-IP: 203.0.113.7\r\n\r\n";

fn head_and_route(c: &mut Criterion) {
    let config = vipgate::config::parse(Path::new("seed.toml"), SEED).expect("valid bench config");
    let table = RouteTable::build(&config);
    let limits = request::Limits::default();
    c.bench_function("seed: parse head + route", |b| {
        b.iter(|| {
            let mut headers = vipgate::proxy::http1::headers();
            let req = request::parse(black_box(REQUEST), &mut headers, &limits)
                .expect("valid")
                .expect("complete");
            let authority = req.authority.expect("host");
            black_box(table.lookup(authority, req.path))
        })
    });
    // The request path as conn runs it: the path is normalised before the lookup.
    let rules = vipgate::wire::path::PathRules::default();
    c.bench_function("seed: parse head + normalise path + route", |b| {
        let mut normal = String::new();
        b.iter(|| {
            let mut headers = vipgate::proxy::http1::headers();
            let req = request::parse(black_box(REQUEST), &mut headers, &limits)
                .expect("valid")
                .expect("complete");
            let authority = req.authority.expect("host");
            let path = match vipgate::wire::path::normalize(req.path, rules, &mut normal) {
                Ok(vipgate::wire::path::Normal::Unchanged) => req.path,
                Ok(_) => normal.as_str(),
                Err(_) => return None,
            };
            Some(black_box(table.lookup(authority, path)))
        })
    });
    for (name, path) in [
        (
            "normalise: nothing to change",
            "/api/posts/2024/hello-world?page=2",
        ),
        (
            "normalise: %20 and UTF-8, nothing to change",
            "/static/caf%C3%A9/a%20b.png",
        ),
        (
            "normalise: dot segments, %61, //",
            "/static/../api//%61dmin/./x?page=2",
        ),
    ] {
        c.bench_function(name, |b| {
            let mut normal = String::new();
            b.iter(|| {
                black_box(vipgate::wire::path::normalize(
                    black_box(path),
                    rules,
                    &mut normal,
                ))
            })
        });
    }
    c.bench_function("seed: route only", |b| {
        b.iter(|| {
            black_box(table.lookup(
                black_box(b"blog.example.test"),
                black_box("/api/posts?page=2"),
            ))
        })
    });
}

/// 1,000 hosts: 900 exact names and 100 wildcards, each with three prefixes.
fn thousand_hosts(c: &mut Criterion) {
    let mut text = String::from("[[listener]]\nbind = \"0.0.0.0:80\"\n");
    for i in 0..1000 {
        let name = if i % 10 == 0 {
            format!("*.zone{i}.example.test")
        } else {
            format!("svc{i}.example.test")
        };
        text.push_str(&format!(
            "[[host]]\nnames = [\"{name}\"]\n[[host.route]]\nprefix = \"/api\"\npool = \"p\"\n[[host.route]]\nprefix = \"/static/\"\npool = \"p\"\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n"
        ));
    }
    text.push_str("[pool.p]\nbackends = [\"192.0.2.21:8080\"]\n");
    let config = vipgate::config::parse(Path::new("1000.toml"), &text).expect("valid bench config");
    let table = RouteTable::build(&config);
    assert!(table.lookup(b"a.b.zone500.example.test", "/api/x").is_ok());
    c.bench_function("1000 hosts: exact host + route", |b| {
        b.iter(|| {
            black_box(table.lookup(
                black_box(b"svc777.example.test"),
                black_box("/api/v1/items"),
            ))
        })
    });
    c.bench_function("1000 hosts: wildcard host + route", |b| {
        b.iter(|| {
            black_box(table.lookup(
                black_box(b"a.b.zone500.example.test"),
                black_box("/static/app.js"),
            ))
        })
    });
}

criterion_group!(benches, head_and_route, thousand_hosts);
criterion_main!(benches);
