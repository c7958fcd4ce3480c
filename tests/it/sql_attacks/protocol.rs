//! Raw protocol bytes: oversized and malformed messages, before and after login, each
//! refused before pgwire decodes it or sluice buffers it.

use super::wire::{claiming, first_error, startup, typed, Wire};
use super::{attacked, memory_mib, psql, scrape, survived};
use crate::support::metric;

#[test]
fn malformed_and_oversized_messages_are_refused_before_pgwire_or_memory_sees_them() {
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\nmax_query_size = \"64KiB\"\n");
    let port = daemon.sql_port();
    let (rss_before, _) = memory_mib(&daemon);
    // A startup packet claiming 300 MB, then two Query messages claiming as much.
    let mut huge = Wire::connect(port);
    let mut packet = (300_000_000i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&[0, 3, 0, 0]);
    let _ = huge.send(&packet);
    let refusal = first_error(&huge.until_ready());
    assert_eq!(refusal.map(|e| e.0), Some("54000".into()));
    for _ in 0..2 {
        let mut w = Wire::login(port);
        // Only the header and a little: the guard reads all that was sent, so the close is
        // clean and the client reads the error.
        let _ = w.send(&claiming(b'Q', 300_000_000, &[b'x'; 100]));
        let got = w.until_ready();
        let (code, message) = first_error(&got).expect("an error");
        assert_eq!(code, "54000", "{message}");
        assert!(message.contains("sql.max_query_size"), "{message}");
        assert!(w.closed());
    }
    // Two clients each sending 290 MB of a message claiming 300 MB, before and after
    // login: the connection is closed long before the bytes are all sent, and sluice's
    // memory does not grow by them (pgwire alone would buffer up to 1 GiB of each).
    let senders: Vec<_> = [false, true]
        .into_iter()
        .map(|login| {
            std::thread::spawn(move || {
                let mut w = if login {
                    Wire::login(port)
                } else {
                    Wire::connect(port)
                };
                if !login {
                    w.send(&startup("sluice")).expect("startup");
                    w.until_ready();
                }
                let mut sent = w.send(&claiming(b'Q', 300_000_000, b"")).map(|_| 5);
                let chunk = vec![b'x'; 1 << 20];
                while let Ok(n) = sent.as_ref().map(|n| *n) {
                    if n >= 290_000_000 {
                        break;
                    }
                    sent = w.send(&chunk).map(|_| n + chunk.len());
                }
                sent.is_err()
            })
        })
        .collect();
    for s in senders {
        assert!(s.join().expect("sender"), "290 MB went through unrefused");
    }
    // The reported panics: each is a FATAL protocol violation now.
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1000i32.to_be_bytes());
    bind.extend_from_slice(b"abc");
    bind.extend_from_slice(&0i16.to_be_bytes());
    for message in [
        typed(b'B', &bind),
        claiming(b'd', 1, b""),
        typed(b'C', b"X\0"),
        typed(b'F', b""),
    ] {
        let mut w = Wire::login(port);
        w.send(&message).expect("send");
        let got = w.until_ready();
        assert_eq!(
            first_error(&got).map(|e| e.0),
            Some("08P01".into()),
            "{got:?}"
        );
        assert!(w.closed());
    }
    // A query just under the limit still runs.
    let list: Vec<String> = (0..9_000).map(|i| i.to_string()).collect();
    let long = format!("SELECT 1 WHERE 1 IN ({})", list.join(","));
    assert!(long.len() > 40_000 && long.len() < 64 * 1024);
    let out = psql(port, "sluice", "", &long);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, peak) = memory_mib(&daemon);
    assert!(
        peak < rss_before + 200,
        "peak {peak} MiB from {rss_before} MiB"
    );
    let m = scrape(&mut daemon);
    assert!(
        metric(
            &m,
            "sluice_sql_rejected_messages_total{reason=\"too_long\"}"
        ) >= Some(3.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "sluice_sql_rejected_messages_total{reason=\"malformed\"}"
        ) >= Some(3.0),
        "{m}"
    );
    survived(&d, daemon, writer);
}

#[test]
fn messages_before_login_are_password_messages_of_bounded_size() {
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\n[sql.users]\nanalyst = \"s3cret-pass\"\n");
    let port = daemon.sql_port();
    let open = |w: &mut Wire| {
        w.send(&startup("analyst")).expect("startup");
        assert_eq!(w.read().map(|m| m.0), Some(b'R'));
    };
    // A cleartext password where SASL's first message is due; a SASL data length of
    // 1,000,000 in a short message; a query; 300 MB: each ends the connection, unread.
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&1_000_000i32.to_be_bytes());
    sasl.extend_from_slice(b"n,,n=,r=x");
    for (message, code) in [
        (typed(b'p', b"s3cret-pass\0"), "08P01"),
        (typed(b'p', &sasl), "08P01"),
        (typed(b'Q', b"SELECT 1\0"), "08P01"),
        (claiming(b'p', 300_000_000, b"x"), "54000"),
    ] {
        let mut w = Wire::connect(port);
        open(&mut w);
        let _ = w.send(&message);
        let got = w.until_ready();
        assert_eq!(first_error(&got).map(|e| e.0), Some(code.into()), "{got:?}");
        assert!(w.closed());
    }
    survived(&d, daemon, writer);
}
