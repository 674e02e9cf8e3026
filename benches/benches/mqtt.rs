//! The MQTT codec on the two packets of every registration step: the register PUBLISH as the
//! Node SDK sends it (QoS 1, packet id 6485, sdk-wire-captures.md Appendix A) and DPS's 202
//! response PUBLISH. Decode includes the topic parse a server does next (`Request::parse`);
//! encode includes building the response topic.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dps_proto::mqtt::topic::{Request, Rid, response_topic};
use dps_proto::mqtt::{Limits, Packet, PacketId, Publish, decode};

const RID: &str = "bc7266d3-bab8-4445-ad20-687267ae9668";
const REGISTER_TOPIC: &str =
    "$dps/registrations/PUT/iotdps-register/?$rid=bc7266d3-bab8-4445-ad20-687267ae9668";
const REGISTER_BODY: &[u8] = br#"{"registrationId":"dev-1"}"#;
const RESPONSE_BODY: &[u8] = br#"{"operationId": "5.6d933c01ec63ab68.6c96525a-60d4-400f-bc57-3178f2bccdd2", "status": "assigning"}"#;

fn encoded(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    let Ok(()) = p.encode(&mut out) else {
        panic!("benchmark packet does not encode");
    };
    out.to_vec()
}

fn codec(c: &mut Criterion) {
    let Some(register_id) = PacketId::new(6485) else {
        panic!("packet id 0");
    };
    let Ok(rid) = Rid::new(RID) else {
        panic!("bad rid");
    };
    let register = Packet::Publish(Publish::at_least_once(
        REGISTER_TOPIC,
        register_id,
        Bytes::from_static(REGISTER_BODY),
    ));
    let response = Packet::Publish(Publish::at_least_once(
        response_topic(202, &rid, Some(1)),
        PacketId::MIN,
        Bytes::from_static(RESPONSE_BODY),
    ));
    let limits = Limits::default();

    for (name, packet) in [("register", &register), ("response", &response)] {
        let wire = encoded(packet);
        let mut g = c.benchmark_group(format!("mqtt/{name}"));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(&wire[..]));
                decode(&mut buf, &limits)
            });
        });
        g.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(512);
            b.iter(|| {
                out.clear();
                black_box(packet).encode(&mut out)
            });
        });
        g.finish();
    }

    // What a server does per request: decode, parse the topic, then PUBACK + response.
    let wire = encoded(&register);
    c.bench_function("mqtt/register_round", |b| {
        let mut out = BytesMut::with_capacity(512);
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&wire[..]));
            let Ok(Some(Packet::Publish(p))) = decode(&mut buf, &limits) else {
                panic!("not a publish");
            };
            let Ok(req) = Request::parse(&p.topic) else {
                panic!("not a request");
            };
            out.clear();
            let reply = Publish::at_least_once(
                response_topic(202, req.rid(), Some(1)),
                PacketId::MIN,
                Bytes::from_static(RESPONSE_BODY),
            );
            Packet::Publish(reply).encode(&mut out)
        });
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
