//! Test certificates made by `openssl`: a CA, and server certificates it
//! issues (EC P-256, PKCS#8 keys). Shared by the daemon's unit tests
//! (through `#[path]`) and its process tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(args: &str, dir: &Path) {
    let output = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "openssl {args}: {output:?}");
}

/// A CA whose certificate and key are `NAME.crt` and `NAME.key` in a folder.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

impl TestCa {
    /// Makes a CA named `name` in `dir`, valid for two days.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        openssl(
            &format!("req -x509 {EC} -days 2 -subj /CN={name} -keyout {name}.key -out {name}.crt"),
            dir,
        );
        TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The CA's certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// Issues a server certificate `NAME.crt` (and `NAME.key`) for
    /// `subject_alt_name` (`IP:127.0.0.1`, `DNS:kelyus`).
    pub fn issue(&self, name: &str, subject_alt_name: &str) -> Issued {
        let dir = &self.dir;
        openssl(
            &format!("req {EC} -subj /CN={name} -keyout {name}.key -out {name}.csr"),
            dir,
        );
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName = {subject_alt_name}\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
            ),
        )
        .expect("write");
        let ca = &self.name;
        openssl(
            &format!(
                "x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.crt"
            ),
            dir,
        );
        Issued {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }
}
