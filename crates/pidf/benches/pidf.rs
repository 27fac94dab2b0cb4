//! Parse, compose and write costs of typical presence documents.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pidf::{compose, Document, Publication};

/// A typical desk-phone publication (~1 KB): one tuple with contact and note, a person with
/// RPID activities and a vendor element, and a device.
const TYPICAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:c="urn:ietf:params:xml:ns:pidf:cipid" entity="sip:alice@example.com">
  <tuple id="t8e5b5d4a">
    <status><basic>open</basic></status>
    <dm:deviceID>urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3</dm:deviceID>
    <contact priority="0.8">sip:alice@192.0.2.10:5060;transport=tcp</contact>
    <note xml:lang="en">In the lab until 4pm &amp; then home</note>
    <timestamp>2024-03-01T09:15:00Z</timestamp>
  </tuple>
  <dm:person id="p5f0b0e1b">
    <rpid:activities><rpid:busy/><rpid:meeting/></rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood>
    <rpid:place-type><rpid:other>lab</rpid:other></rpid:place-type>
    <rpid:user-input idle-threshold="600" last-input="2024-03-01T09:10:00Z">active</rpid:user-input>
    <c:display-name>Alice Example</c:display-name>
    <dm:note>Quarterly planning</dm:note>
    <dm:timestamp>2024-03-01T09:15:00Z</dm:timestamp>
  </dm:person>
  <dm:device id="d0004f2a1b2c3">
    <rpid:user-input>active</rpid:user-input>
    <dm:deviceID>urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3</dm:deviceID>
  </dm:device>
</presence>
"#;

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("pidf");
    group.throughput(Throughput::Bytes(TYPICAL.len() as u64));
    group.bench_function("parse_typical_1k", |b| {
        b.iter(|| Document::parse(black_box(TYPICAL.as_bytes())))
    });
    group.finish();

    let Ok(document) = Document::parse(TYPICAL.as_bytes()) else {
        panic!("the benchmark document must parse");
    };
    c.bench_function("pidf/to_xml_typical", |b| {
        b.iter(|| black_box(&document).to_xml())
    });

    let mut second = document.clone();
    second.tuples[0].status.basic = Some(pidf::Basic::Closed);
    let third =
        pidf::PresenceInfo::new(pidf::PresenceStatus::Away).to_document("sip:alice@example.com");
    let publications = [
        Publication {
            etag: "a1",
            published_at_ms: 1_000,
            document: &document,
        },
        Publication {
            etag: "b2",
            published_at_ms: 2_000,
            document: &second,
        },
        Publication {
            etag: "c3",
            published_at_ms: 3_000,
            document: &third,
        },
    ];
    c.bench_function("pidf/compose_3_publications", |b| {
        b.iter(|| {
            compose(
                black_box("pres:alice@example.com"),
                black_box(&publications),
            )
        })
    });
    c.bench_function("pidf/compose_3_then_to_xml", |b| {
        b.iter(|| compose("pres:alice@example.com", black_box(&publications)).to_xml())
    });
}

criterion_group!(pidf_benches, benches);
criterion_main!(pidf_benches);
