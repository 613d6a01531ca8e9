//! `tcat serve --wss` with a self-signed certificate and `tcat connect --ca-cert`.

mod common;

use common::{run, scratch, self_signed, serve};

#[test]
fn wss_with_the_ca_cert_works_and_without_it_is_a_tls_error() {
    let dir = scratch("tls");
    let (cert, key) = self_signed(&dir);
    let server = serve(
        &[
            "--ws",
            "127.0.0.1:0",
            "--wss",
            "127.0.0.1:0",
            "--cert",
            &cert,
            "--key",
            &key,
        ],
        2,
    );
    assert!(
        server.urls[0].starts_with("ws://127.0.0.1:"),
        "{:?}",
        server.urls
    );
    let wss = server.urls[1].clone();
    assert!(wss.starts_with("wss://127.0.0.1:"), "{wss}");

    let out = run(
        &["connect", "--ca-cert", &cert, &wss],
        "secure ✓\n".as_bytes(),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, vec!["secure ✓"]);

    let out = run(&["connect", &wss], b"x\n");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("TLS") || out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );

    // Verification off only under its dangerous name.
    let out = run(&["connect", "--danger-accept-invalid-certs", &wss], b"y\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, vec!["y"]);

    // The plain listener of the same server works too.
    let out = run(&["connect", &server.urls[0]], b"plain\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
}

#[test]
fn unreadable_certificate_files_are_usage_errors() {
    let dir = scratch("tls-bad");
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let bogus = bogus.to_str().unwrap();
    let out = run(
        &[
            "serve",
            "--wss",
            "127.0.0.1:0",
            "--cert",
            bogus,
            "--key",
            bogus,
        ],
        b"",
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    let out = run(&["connect", "--ca-cert", bogus, "wss://127.0.0.1:1/"], b"");
    assert_eq!(out.code(), Some(2), "{out:?}");
}
