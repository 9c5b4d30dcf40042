//! Criterion benches of the pure wire code: the chunked decoder, Maglev table build and
//! lookup, and the ARP and NDP answer paths (parse a request, build the reply).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vipgate::l2::MacAddr;
use vipgate::proxy::http1::chunked::ChunkedDecoder;
use vipgate::proxy::upstream::balance::{fnv1a, maglev_table, MAGLEV_TABLE_SIZE};
use vipgate::wire::{arp, ndp};

fn chunked(c: &mut Criterion) {
    // 64 KiB of payload in 4 KiB chunks, the shape of a streamed API response.
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b'x'; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode 64 KiB in 4 KiB chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            black_box(d.feed(black_box(&body), |p| {
                black_box(p);
            }))
        })
    });
    g.finish();
}

fn maglev(c: &mut Criterion) {
    let names: Vec<String> = (0..10)
        .map(|i| format!("192.0.2.{}:8080", 20 + i))
        .collect();
    let keys: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let weights = vec![1u32; keys.len()];
    c.bench_function("maglev: build table, 10 backends", |b| {
        b.iter(|| black_box(maglev_table(black_box(&keys), &weights, MAGLEV_TABLE_SIZE)))
    });
    let table = maglev_table(&keys, &weights, MAGLEV_TABLE_SIZE);
    c.bench_function("maglev: hash a key and look it up", |b| {
        b.iter(|| {
            let h = fnv1a(black_box(b"session=4f1c2a9e"), 0xcbf2_9ce4_8422_2325) as usize;
            black_box(table[h % table.len()])
        })
    });
}

fn arp_answer(c: &mut Criterion) {
    let ours = MacAddr([0x02, 0, 0xc0, 0, 2, 2]);
    let vip = Ipv4Addr::new(192, 0, 2, 200);
    // A who-has for the VIP from 192.0.2.10, as arping sends it (padded to 60 bytes).
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0xc0, 0, 2, 0x0a, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[0x02, 0, 0xc0, 0, 2, 0x0a, 192, 0, 2, 10]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, 200]);
    frame.resize(60, 0);
    assert!(
        arp::answer(&frame, ours, vip).is_some(),
        "the bench frame must be answered"
    );
    c.bench_function("arp: decide and build the reply", |b| {
        b.iter(|| black_box(arp::answer(black_box(&frame), ours, vip)))
    });
}

fn ndp_answer(c: &mut Criterion) {
    let ours = MacAddr([0x02, 0, 0xc0, 0, 2, 2]);
    let client = MacAddr([0x02, 0, 0xc0, 0, 2, 0x0a]);
    let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
    // A multicast solicitation for the VIP from the client's link-local address, as the kernel
    // and ndisc6 send it (86 bytes: the checksum over the pseudo-header is verified).
    let group = ndp::solicited_node(vip);
    let frame = ndp::emit_frame(
        ndp::multicast_mac(group),
        client,
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xc0, 0xfe00, 0x20a),
        group,
        &ndp::NdpRepr::Solicit {
            target: vip,
            source_mac: Some(client),
        },
    );
    assert!(
        ndp::answer(&frame, ours, vip).is_some(),
        "the bench frame must be answered"
    );
    c.bench_function(
        "ndp: check a solicitation, decide and build the advertisement",
        |b| b.iter(|| black_box(ndp::answer(black_box(&frame), ours, vip))),
    );
    c.bench_function("ndp: build an unsolicited advertisement", |b| {
        b.iter(|| black_box(ndp::build_unsolicited(ours, black_box(vip))))
    });
}

criterion_group!(benches, chunked, maglev, arp_answer, ndp_answer);
criterion_main!(benches);
