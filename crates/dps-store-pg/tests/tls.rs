//! TLS to PostgreSQL: `require` refuses a server that does not speak TLS (a fake server on
//! 127.0.0.1 answers the SSL request with "N"); against the real server of
//! `DPS_TEST_DATABASE_URL`, `disable` connects in plain text, `require` encrypts, `verify-full`
//! accepts the server's certificate when given its CA and refuses it with another CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::error::Error as _;
use std::path::PathBuf;

use dps_store::StoreError;
use dps_store_pg::{PgConfig, PgStore, PgTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The whole `source()` chain of an error, joined.
fn chain(e: &StoreError) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn config(url: &str, schema: &str, tls: PgTls) -> PgConfig {
    let mut cfg = PgConfig::new(url);
    cfg.schema = format!("dps_tls_{schema}_{}", std::process::id());
    cfg.tls = tls;
    cfg.max_attempts = 1;
    cfg
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_clearly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        // Answer the client's 8-byte SSLRequest the way a server without TLS does.
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        sock.read_exact(&mut request).await.unwrap();
        sock.write_all(b"N").await.unwrap();
        request
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let err = PgStore::connect(&config(&url, "fake", PgTls::Require))
        .await
        .expect_err("a server without TLS must be refused");
    let request = server.await.unwrap();
    assert_eq!(
        request,
        [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
        "the client asked for TLS first"
    );
    let msg = chain(&err);
    assert!(msg.contains("TLS"), "{msg}");
    assert!(err.is_retryable(), "a connection failure is Unavailable");
}

#[test]
fn modes_parse_like_sslmode() {
    assert_eq!(PgTls::from_mode("disable", None), Ok(PgTls::Disable));
    assert_eq!(PgTls::from_mode("require", None), Ok(PgTls::Require));
    assert_eq!(
        PgTls::from_mode("verify-full", Some(std::path::Path::new("/ca.pem"))),
        Ok(PgTls::VerifyFull {
            ca_file: PathBuf::from("/ca.pem")
        })
    );
    assert!(
        PgTls::from_mode("verify-full", None)
            .unwrap_err()
            .contains("CA file")
    );
    assert!(PgTls::from_mode("prefer", None).is_err());
}

#[tokio::test]
async fn verify_full_with_a_missing_ca_file_is_a_configuration_error() {
    let tls = PgTls::VerifyFull {
        ca_file: PathBuf::from("/nonexistent/ca.pem"),
    };
    let err = PgStore::connect(&config("postgres://x@127.0.0.1:1/x", "nofile", tls))
        .await
        .expect_err("no CA file");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(chain(&err).contains("cannot read CA file"), "{err:?}");
}

/// The real server: plain, `require`, and `verify-full` with the right and a wrong CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_against_the_test_server() {
    let Ok(url) = std::env::var("DPS_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: DPS_TEST_DATABASE_URL is not set (PostgreSQL TLS)");
        return;
    };
    let plain = PgStore::connect(&config(&url, "plain", PgTls::Disable))
        .await
        .unwrap();
    assert!(!plain.tls_in_use().await.unwrap(), "disable is plain text");
    let (ssl_on, cert_file) = plain.server_tls_settings().await.unwrap();
    plain.drop_schema().await.unwrap();
    if !ssl_on {
        eprintln!("SKIPPED: the test server has ssl = off (require / verify-full)");
        return;
    }

    let required = PgStore::connect(&config(&url, "req", PgTls::Require))
        .await
        .unwrap();
    assert!(required.tls_in_use().await.unwrap(), "require encrypts");
    required.drop_schema().await.unwrap();

    // Another CA: the server's certificate is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let err = PgStore::connect(&config(&url, "wrong", PgTls::VerifyFull { ca_file: wrong }))
        .await
        .expect_err("an unknown issuer must be refused");
    assert!(chain(&err).contains("certificate"), "{}", chain(&err));

    // The server's own (self-signed) certificate as the CA, reached by the name it carries.
    let Ok(pem) = std::fs::read(&cert_file) else {
        eprintln!("SKIPPED: cannot read the server certificate {cert_file} (verify-full success)");
        return;
    };
    let ca = dir.path().join("server-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let by_name = url.replace("127.0.0.1", "localhost");
    match PgStore::connect(&config(&by_name, "full", PgTls::VerifyFull { ca_file: ca })).await {
        Ok(store) => {
            assert!(store.tls_in_use().await.unwrap());
            store.drop_schema().await.unwrap();
        }
        Err(e) => panic!(
            "verify-full with the server's CA via {by_name}: {}",
            chain(&e)
        ),
    }
}
