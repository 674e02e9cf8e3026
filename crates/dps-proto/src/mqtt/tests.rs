//! Properties of [`decode`] across packet kinds: round trips, every split point, coalesced
//! packets, early refusal of oversized or malformed headers, and no panics on random bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// Every captured packet of one Node symmetric-key session, in order, plus PINGREQ/PINGRESP.
fn captured_session() -> Vec<Vec<u8>> {
    vec![
        connect::NODE_SAS.concat(),
        connack::ACCEPTED.to_vec(),
        subscribe::NODE_SUBSCRIBE.concat(),
        suback::NODE_SUBACK.to_vec(),
        publish::NODE_REGISTER.concat(),
        puback::NODE_REGISTER_ACK.to_vec(),
        publish::RESPONSE_202.concat(),
        publish::NODE_POLL.concat(),
        ping::PINGREQ.to_vec(),
        ping::PINGRESP.to_vec(),
        unsubscribe::NODE_UNSUBSCRIBE.concat(),
        unsuback::NODE_UNSUBACK.to_vec(),
        disconnect::DISCONNECT.to_vec(),
        connect::PYTHON_SAS.concat(),
        connect::NODE_X509.concat(),
        publish::PYTHON_REGISTER.concat(),
        connack::NOT_AUTHORIZED.to_vec(),
    ]
}

fn encoded(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(&mut out).unwrap();
    out.to_vec()
}

/// Feeds `wire` cut at `at`: the prefix must be `Ok(None)` with nothing consumed.
fn check_split(wire: &[u8], at: usize, limits: &Limits) -> Packet {
    let mut buf = BytesMut::from(&wire[..at]);
    assert_eq!(decode(&mut buf, limits), Ok(None), "split at {at}");
    assert_eq!(&buf[..], &wire[..at], "consumed at {at}");
    buf.extend_from_slice(&wire[at..]);
    let p = decode(&mut buf, limits).unwrap().unwrap();
    assert!(buf.is_empty());
    p
}

#[test]
fn captures_survive_every_split_point() {
    for wire in captured_session() {
        let whole = decode(&mut BytesMut::from(&wire[..]), &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(encoded(&whole), wire);
        for at in 0..wire.len() {
            assert_eq!(check_split(&wire, at, &Limits::default()), whole);
        }
    }
}

#[test]
fn coalesced_packets_decode_in_order() {
    let session = captured_session();
    let mut buf = BytesMut::from(&session.concat()[..]);
    for wire in &session {
        let p = decode(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(&encoded(&p), wire);
    }
    assert_eq!(decode(&mut buf, &Limits::default()), Ok(None));
}

#[test]
fn oversized_packets_are_refused_from_the_header() {
    let max = Limits::DEFAULT.max_packet;
    assert_eq!(max, 96 * 1024 + 516);
    // Exactly at the limit: still waiting for the body.
    let mut at = BytesMut::new();
    at.extend_from_slice(&[0x30]);
    codec::put_varint(&mut at, max);
    assert_eq!(decode(&mut at, &Limits::default()), Ok(None));
    // One byte more: refused before any of the body arrives, nothing consumed.
    let mut over = BytesMut::new();
    over.extend_from_slice(&[0x30]);
    codec::put_varint(&mut over, max + 1);
    let len = over.len();
    assert_eq!(
        decode(&mut over, &Limits::default()),
        Err(Error::PacketTooLarge { len: max + 1, max })
    );
    assert_eq!(over.len(), len);
    // The largest varint, and a fifth length byte.
    let mut huge = BytesMut::from(&b"\x30\xff\xff\xff\x7f"[..]);
    assert!(matches!(
        decode(&mut huge, &Limits::UNBOUNDED),
        Ok(None) | Err(Error::PacketTooLarge { .. })
    ));
    let mut five = BytesMut::from(&b"\x30\xff\xff\xff\xff\x01"[..]);
    assert_eq!(
        decode(&mut five, &Limits::UNBOUNDED),
        Err(Error::MalformedRemainingLength)
    );
}

#[test]
fn a_96_kb_payload_fits_the_default_limit() {
    let topic = format!(
        "$dps/registrations/PUT/iotdps-register/?$rid={}",
        "r".repeat(467)
    );
    assert_eq!(topic.len(), DEFAULT_MAX_TOPIC);
    let p = Packet::Publish(Publish::at_least_once(
        topic,
        PacketId::MIN,
        vec![b' '; crate::http::MAX_BODY_BYTES],
    ));
    let wire = encoded(&p);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(decode(&mut buf, &Limits::default()), Ok(Some(p)));
}

#[test]
fn reserved_packet_types_are_refused() {
    for t in [0u8, 5, 6, 7, 15] {
        let mut buf = BytesMut::from(&[t << 4, 0][..]);
        assert_eq!(
            decode(&mut buf, &Limits::default()),
            Err(Error::UnexpectedPacketType(t))
        );
    }
}

fn string() -> impl Strategy<Value = String> {
    "[^\\x00]{0,24}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[^\\x00+#]{1,40}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => "[^\\x00+#/]{0,8}", 1 => Just("+".to_owned())];
    (prop::collection::vec(level, 1..5), any::<bool>()).prop_filter_map(
        "empty filter",
        |(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str(if f.is_empty() { "#" } else { "/#" });
            }
            (!f.is_empty()).then_some(f)
        },
    )
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap_or(PacketId::MIN))
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn connect() -> impl Strategy<Value = Packet> {
    let will = (topic_name(), payload(), qos(), any::<bool>()).prop_map(
        |(topic, payload, qos, retain)| Will {
            topic,
            payload,
            qos,
            retain,
        },
    );
    let creds = prop::option::of((
        string(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ));
    (
        string(),
        any::<bool>(),
        any::<u16>(),
        creds,
        prop::option::of(will),
    )
        .prop_map(|(client_id, clean_session, keep_alive, creds, will)| {
            let (username, password) = match creds {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            Packet::Connect(Connect {
                client_id,
                clean_session,
                keep_alive,
                username,
                password,
                will,
            })
        })
}

fn publish() -> impl Strategy<Value = Packet> {
    let delivery = prop::option::of((packet_id(), any::<bool>())).prop_map(|d| match d {
        None => PublishQos::AtMostOnce,
        Some((packet_id, dup)) => PublishQos::AtLeastOnce { packet_id, dup },
    });
    (topic_name(), delivery, any::<bool>(), payload()).prop_map(|(topic, qos, retain, payload)| {
        Packet::Publish(Publish {
            topic,
            qos,
            retain,
            payload,
        })
    })
}

fn any_packet() -> impl Strategy<Value = Packet> {
    let code = (0u8..=5)
        .prop_map(|c| ConnectReturnCode::from_u8(c).unwrap_or(ConnectReturnCode::Accepted));
    let connack = (any::<bool>(), code).prop_map(|(sp, code)| {
        Packet::ConnAck(ConnAck {
            session_present: sp && code == ConnectReturnCode::Accepted,
            code,
        })
    });
    let subscription =
        (topic_filter(), qos()).prop_map(|(filter, qos)| Subscription { filter, qos });
    let subscribe = (packet_id(), prop::collection::vec(subscription, 1..8))
        .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters }));
    let suback_code = prop_oneof![
        qos().prop_map(SubAckCode::Granted),
        Just(SubAckCode::Failure)
    ];
    let suback = (packet_id(), prop::collection::vec(suback_code, 1..8))
        .prop_map(|(packet_id, codes)| Packet::SubAck(SubAck { packet_id, codes }));
    let unsubscribe = (packet_id(), prop::collection::vec(topic_filter(), 1..8))
        .prop_map(|(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters }));
    prop_oneof![
        connect(),
        connack,
        publish(),
        packet_id().prop_map(|packet_id| Packet::PubAck(PubAck { packet_id })),
        subscribe,
        suback,
        unsubscribe,
        packet_id().prop_map(|packet_id| Packet::UnsubAck(UnsubAck { packet_id })),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #[test]
    fn every_packet_kind_round_trips(p in any_packet()) {
        let wire = encoded(&p);
        let mut buf = BytesMut::from(&wire[..]);
        prop_assert_eq!(decode(&mut buf, &Limits::default()), Ok(Some(p.clone())));
        prop_assert!(buf.is_empty());
        // And fed in two reads, cut anywhere.
        for at in 0..wire.len() {
            prop_assert_eq!(check_split(&wire, at, &Limits::default()), p.clone());
        }
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(p)) = decode(&mut buf, &Limits::default()) {
            // Whatever decodes re-encodes to a packet that decodes to itself.
            let mut again = BytesMut::from(&encoded(&p)[..]);
            prop_assert_eq!(decode(&mut again, &Limits::default()), Ok(Some(p)));
        }
    }

    #[test]
    fn mutated_captures_never_panic(i in any::<prop::sample::Index>(), b: u8, cut: prop::sample::Index) {
        let session = captured_session().concat();
        let mut data = session.clone();
        let at = i.index(data.len());
        data[at] = b;
        data.truncate(cut.index(data.len() + 1).max(at));
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(p)) = decode(&mut buf, &Limits::default()) {
            let mut again = BytesMut::from(&encoded(&p)[..]);
            prop_assert_eq!(decode(&mut again, &Limits::default()), Ok(Some(p)));
        }
    }
}
