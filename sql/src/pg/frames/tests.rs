use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
use proptest::prelude::*;

use super::*;

const LIMITS: Limits = Limits {
    before_login: STARTUP_PACKET_MAX,
    query: 2048,
};

/// A typed message: its tag, length field and body.
fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Checks a whole message as the guard does: its header, then its body.
fn checked(phase: Phase, message: &[u8]) -> Result<(), Violation> {
    let head = header_len(phase);
    if message.len() < head {
        return Err(Violation::malformed("short"));
    }
    let tag = (phase != Phase::Startup).then(|| message[0]);
    let at = head - 4;
    let length = i32::from_be_bytes([
        message[at],
        message[at + 1],
        message[at + 2],
        message[at + 3],
    ]);
    let total = size(phase, tag, length, &LIMITS)?;
    if total != message.len() {
        return Err(Violation::malformed("length differs from the bytes sent"));
    }
    check(phase, tag, &message[head..])
}

/// What pgwire makes of a message that passed: it must not panic.
fn pgwire_decodes(phase: Phase, message: &[u8]) {
    let mut ctx = DecodeContext::default();
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = phase == Phase::Startup;
    let mut buf = BytesMut::from(message);
    let decoded = PgWireFrontendMessage::decode(&mut buf, &ctx);
    if let (
        Phase::Login { sasl_initial: true },
        Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(p))),
    ) = (phase, decoded)
    {
        let _ = p.into_sasl_initial_response();
    }
}

#[test]
fn the_reported_panics_are_violations() {
    let initial = Phase::Login { sasl_initial: true };
    // A cleartext password where SASL's first message is due: no data length after the
    // mechanism name ("advance out of bounds").
    let v = checked(initial, &typed(b'p', b"secret\0")).expect_err("cleartext");
    assert_eq!(v.reason, "malformed");
    // A SASL data length of 1,000,000 in a message that has 20 bytes ("split_to").
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&1_000_000i32.to_be_bytes());
    body.extend_from_slice(b"n,,n=,r=x");
    assert!(checked(initial, &typed(b'p', &body)).is_err());
    // A Bind whose only parameter claims 1000 bytes and has 3.
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1000i32.to_be_bytes());
    bind.extend_from_slice(b"abc");
    bind.extend_from_slice(&0i16.to_be_bytes());
    assert!(checked(Phase::Session, &typed(b'B', &bind)).is_err());
    // A length field shorter than itself.
    assert!(checked(Phase::Session, &[b'd', 0, 0, 0, 1]).is_err());
    assert!(checked(Phase::Session, &[b'Q', 0xff, 0xff, 0xff, 0xff]).is_err());
}

#[test]
fn well_formed_messages_pass() {
    let initial = Phase::Login { sasl_initial: true };
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&9i32.to_be_bytes());
    sasl.extend_from_slice(b"n,,n=,r=x");
    checked(initial, &typed(b'p', &sasl)).expect("SASLInitialResponse");
    checked(
        Phase::Login {
            sasl_initial: false,
        },
        &typed(b'p', b"c=biws,r=x,p=y"),
    )
    .expect("SASLResponse");
    checked(Phase::Session, &typed(b'Q', b"SELECT 1\0")).expect("Query");
    let mut bind = b"\0s1\0".to_vec();
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&2i16.to_be_bytes());
    bind.extend_from_slice(&(-1i32).to_be_bytes());
    bind.extend_from_slice(&3i32.to_be_bytes());
    bind.extend_from_slice(b"abc");
    bind.extend_from_slice(&0i16.to_be_bytes());
    checked(Phase::Session, &typed(b'B', &bind)).expect("Bind");
    for m in [typed(b'S', b""), typed(b'H', b""), typed(b'D', b"Sname\0")] {
        checked(Phase::Session, &m).expect("Sync, Flush, Describe");
    }
    let mut startup = 12i32.to_be_bytes().to_vec();
    startup.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    startup.extend_from_slice(b"u\0s\0\0");
    let len = startup.len() as i32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    checked(Phase::Startup, &startup).expect("startup");
}

#[test]
fn lengths_are_bounded_by_phase() {
    let startup_too_long = size(Phase::Startup, None, 10_001, &LIMITS).expect_err("startup");
    assert_eq!(startup_too_long.sqlstate, "54000");
    // Before login a Query is not even allowed, and never buffered at 300 MB.
    let login = Phase::Login { sasl_initial: true };
    assert_eq!(
        size(login, Some(b'Q'), 300_000_000, &LIMITS)
            .expect_err("300 MB")
            .reason,
        "too_long"
    );
    assert_eq!(
        checked(login, &typed(b'Q', b"SELECT 1\0"))
            .expect_err("a query before login")
            .reason,
        "unexpected"
    );
    // After login a query may be as long as the limit, not longer.
    assert!(size(Phase::Session, Some(b'Q'), 2048, &LIMITS).is_ok());
    let v = size(Phase::Session, Some(b'Q'), 2049, &LIMITS).expect_err("over");
    assert!(v.message.contains("sql.max_query_size"), "{}", v.message);
    // Messages that carry no query stay small.
    assert!(size(Phase::Session, Some(b'E'), 10_001, &LIMITS).is_err());
    assert_eq!(
        checked(Phase::Session, &typed(b'F', b""))
            .expect_err("FunctionCall")
            .reason,
        "unexpected"
    );
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Startup),
        Just(Phase::Login { sasl_initial: true }),
        Just(Phase::Login {
            sasl_initial: false
        }),
        Just(Phase::Session),
    ]
}

/// A message's body from the pieces the decoders read (names, counts, lengths).
pub(crate) fn pieces() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12),
        Just(b"\0".to_vec()),
        Just(b"SCRAM-SHA-256\0".to_vec()),
        (-2i16..4).prop_map(|n| n.to_be_bytes().to_vec()),
        (-2i32..40).prop_map(|n| n.to_be_bytes().to_vec()),
        Just(PROTOCOL_3_0.to_be_bytes().to_vec()),
        Just(CANCEL_REQUEST.to_be_bytes().to_vec()),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// A frontend message's type, mostly the ones pgwire decodes.
pub(crate) fn tag() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'p'),
        Just(b'Q'),
        Just(b'P'),
        Just(b'B'),
        Just(b'E'),
        Just(b'D'),
        Just(b'C'),
        Just(b'S'),
        Just(b'd'),
        Just(b'f'),
        Just(b'c'),
        any::<u8>(),
    ]
}

/// Messages built from [`pieces`], with lengths often a little off, so that most
/// mistakes are near the boundaries.
fn message() -> impl Strategy<Value = (Phase, Vec<u8>)> {
    (phase(), tag(), pieces(), -3i32..4).prop_map(|(phase, tag, body, off)| {
        let length = body.len() as i32 + 4 + off;
        let mut m = Vec::new();
        if phase != Phase::Startup {
            m.push(tag);
        }
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(&body);
        (phase, m)
    })
}

/// Cases per property: a short run in the suite; `SLUICE_FUZZ_CASES` sets a long one
/// (`scripts/bench.sh fuzz`).
pub(crate) fn cases() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever arrives, the check answers without panicking, and whatever it lets
    /// through, pgwire's decoder takes without panicking.
    #[test]
    fn nothing_that_passes_panics_pgwire((phase, message) in message()) {
        if checked(phase, &message).is_ok() {
            pgwire_decodes(phase, &message);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_check(phase in phase(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = checked(phase, &bytes);
    }
}
