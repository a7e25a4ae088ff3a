//! The certificate follows its files: a pair replaced in place or by
//! rename is served from the next look on; a pair that does not load (a
//! key that is not the certificate's, a certificate that is not PEM) is
//! refused and the previous one kept; errors name the file and never show
//! the key. Certificates are made by `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;

/// A self-signed certificate and its key (EC P-256, PKCS#8) for `name`,
/// written as `dir/NAME.crt` and `dir/NAME.key`.
fn self_signed(dir: &Path, name: &str) -> CertificateFiles {
    let files = CertificateFiles {
        cert_file: dir.join(format!("{name}.crt")),
        key_file: dir.join(format!("{name}.key")),
    };
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&files.key_file)
        .arg("-out")
        .arg(&files.cert_file)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "openssl: {output:?}");
    files
}

/// The DER of the first certificate in `path`.
fn first_certificate(path: &Path) -> Vec<u8> {
    read_certificates(path, "cert_file").expect("certificates")[0].to_vec()
}

/// The DER of the certificate `certificate` serves.
fn served(certificate: &ReloadingCertificate) -> Vec<u8> {
    certificate.current().cert[0].to_vec()
}

/// Copies `from` over `to` in place (same inode).
fn rewrite(from: &Path, to: &Path) {
    // Past the file system's timestamp granularity, so the change shows.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(to, std::fs::read(from).expect("read")).expect("write");
}

/// The error and its causes, as the daemon logs them.
fn message(error: &TlsFilesError) -> String {
    chain(error)
}

#[test]
fn a_changed_pair_is_served_and_a_bad_one_is_refused_keeping_the_old() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        self_signed(dir.path(), "a"),
        self_signed(dir.path(), "b"),
        self_signed(dir.path(), "c"),
    );
    let live = CertificateFiles {
        cert_file: dir.path().join("live.crt"),
        key_file: dir.path().join("live.key"),
    };
    rewrite(&a.cert_file, &live.cert_file);
    rewrite(&a.key_file, &live.key_file);
    let certificate = ReloadingCertificate::load(live.clone()).expect("load");
    assert_eq!(served(&certificate), first_certificate(&a.cert_file));
    assert_eq!(served(&certificate), first_certificate(&a.cert_file));

    // Rewritten in place: the next look serves b.
    rewrite(&b.cert_file, &live.cert_file);
    rewrite(&b.key_file, &live.key_file);
    assert_eq!(served(&certificate), first_certificate(&b.cert_file));

    // A renewal halfway: c's certificate with b's key does not load; b stays.
    rewrite(&c.cert_file, &live.cert_file);
    assert_eq!(served(&certificate), first_certificate(&b.cert_file));
    // Then the key arrives: c.
    rewrite(&c.key_file, &live.key_file);
    assert_eq!(served(&certificate), first_certificate(&c.cert_file));

    // A certificate file that is not PEM: c stays.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&live.cert_file, "not a certificate\n").expect("write");
    assert_eq!(served(&certificate), first_certificate(&c.cert_file));

    // Replaced by rename (a new inode), as agenix and atomic writers do: a.
    let staged = dir.path().join("staged.crt");
    std::fs::copy(&a.cert_file, &staged).expect("copy");
    std::fs::rename(&staged, &live.cert_file).expect("rename");
    let staged = dir.path().join("staged.key");
    std::fs::copy(&a.key_file, &staged).expect("copy");
    std::fs::rename(&staged, &live.key_file).expect("rename");
    assert_eq!(served(&certificate), first_certificate(&a.cert_file));
}

#[test]
fn new_files_are_taken_only_when_they_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        self_signed(dir.path(), "a"),
        self_signed(dir.path(), "b"),
        self_signed(dir.path(), "c"),
    );
    let certificate = ReloadingCertificate::load(a.clone()).expect("load");
    let mismatched = CertificateFiles {
        cert_file: b.cert_file.clone(),
        key_file: c.key_file.clone(),
    };
    let error = certificate.use_files(mismatched).expect_err("a mismatch");
    assert!(matches!(error, TlsFilesError::Mismatch { .. }), "{error:?}");
    assert_eq!(certificate.files(), a);
    assert_eq!(served(&certificate), first_certificate(&a.cert_file));

    certificate.use_files(b.clone()).expect("b loads");
    assert_eq!(certificate.files(), b);
    assert_eq!(served(&certificate), first_certificate(&b.cert_file));
    // The same files read again at once (SIGHUP), whatever their stamps say.
    std::fs::copy(&c.cert_file, &b.cert_file).expect("copy");
    std::fs::copy(&c.key_file, &b.key_file).expect("copy");
    certificate.use_files(b.clone()).expect("b loads");
    assert_eq!(served(&certificate), first_certificate(&c.cert_file));
}

#[test]
fn bad_pairs_say_which_file_and_never_show_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (self_signed(dir.path(), "a"), self_signed(dir.path(), "b"));
    let key_text = std::fs::read_to_string(&a.key_file).expect("key");
    let key_body: String = key_text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "hello\n").expect("write");
    // The key's base64 cut short: a PEM whose body does not decode.
    let broken_key = dir.path().join("broken.key");
    std::fs::write(&broken_key, key_text.replacen('M', "!", 3)).expect("write");
    let pair = |cert: &PathBuf, key: &PathBuf| CertificateFiles {
        cert_file: cert.clone(),
        key_file: key.clone(),
    };
    let cases = [
        (
            pair(&a.cert_file, &b.key_file),
            format!(
                "key_file {} is not the private key of the certificate in cert_file {}",
                b.key_file.display(),
                a.cert_file.display()
            ),
        ),
        (
            pair(&missing, &a.key_file),
            format!("cannot read cert_file {}", missing.display()),
        ),
        (
            pair(&a.cert_file, &missing),
            format!("cannot read key_file {}", missing.display()),
        ),
        (
            pair(&not_pem, &a.key_file),
            format!("cert_file {} holds no PEM certificate", not_pem.display()),
        ),
        (
            pair(&a.cert_file, &not_pem),
            format!("key_file {} holds no PEM private key", not_pem.display()),
        ),
        (
            pair(&a.key_file, &a.key_file),
            format!(
                "cert_file {} holds no PEM certificate",
                a.key_file.display()
            ),
        ),
        (
            pair(&a.cert_file, &broken_key),
            format!("key_file {} holds no PEM private key", broken_key.display()),
        ),
    ];
    for (files, expected) in cases {
        let error = load_pair(&files).expect_err(&expected);
        let text = message(&error);
        assert!(text.contains(&expected), "{expected}: {text}");
        assert!(!text.contains(&key_body), "the key shows: {text}");
        for line in key_body.as_bytes().chunks(16) {
            let piece = String::from_utf8_lossy(line);
            assert!(!text.contains(piece.as_ref()), "key material shows: {text}");
        }
    }
    assert!(load_pair(&a).is_ok());
}

#[test]
fn rsa_and_sec1_keys_load_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The PKCS#8 key openssl makes, rewritten in its algorithm's own form.
    for (name, rewrite, form) in [
        ("rsa", ["rsa", "-traditional"], "RSA PRIVATE KEY"),
        ("ec", ["ec", "-outform=PEM"], "EC PRIVATE KEY"),
    ] {
        let files = CertificateFiles {
            cert_file: dir.path().join(format!("{name}.crt")),
            key_file: dir.path().join(format!("{name}.key")),
        };
        let mut request = Command::new("openssl");
        request.args(["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=x"]);
        if name == "rsa" {
            request.args(["-newkey", "rsa:2048"]);
        } else {
            request.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        }
        let output = request
            .arg("-keyout")
            .arg(&files.key_file)
            .arg("-out")
            .arg(&files.cert_file)
            .output()
            .expect("openssl");
        assert!(output.status.success(), "{output:?}");
        let output = Command::new("openssl")
            .args(rewrite)
            .arg("-in")
            .arg(&files.key_file)
            .output()
            .expect("openssl");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).expect("PEM");
        assert!(text.contains(form), "{text}");
        std::fs::write(&files.key_file, text).expect("write");
        load_pair(&files).unwrap_or_else(|error| panic!("{name}: {}", message(&error)));
    }
}
