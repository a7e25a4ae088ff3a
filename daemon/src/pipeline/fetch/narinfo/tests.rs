//! Narinfos as nix-serve, harmonia, attic and Nix's own binary caches
//! write them, and ones refused.

use super::*;

const PATH: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-hello-2.12";
const DEP: &str = "0d2xrn8ndi1nnmvaxx5g8a3qmwr1lg4j-glibc-2.35";

fn path() -> StorePath {
    PATH.parse().expect("path")
}

fn narinfo(url: &str, compression: Option<&str>) -> String {
    let mut text = format!("StorePath: {PATH}\nURL: {url}\n");
    if let Some(compression) = compression {
        text.push_str(&format!("Compression: {compression}\n"));
    }
    text.push_str(&format!(
        "FileHash: sha256:1ymz1dp4x41s8rw1ysmrd9b7hjbdk5s6c5kbhdyqv03wkqhvvzyv\nFileSize: 1234\nNarHash: sha256:0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0\nNarSize: 5678\nReferences: {DEP} 0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-hello-2.12\nDeriver: 1wjd28y7m1r0z5ylhahk1gbjpa6kfyrl-hello-2.12.drv\nSig: kelyus-1:abc=\nSig: other-1:def=\n"
    ));
    text
}

#[test]
fn reads_the_forms_caches_write() {
    // nix-serve and Nix's own caches: nar/<filehash>.nar.xz.
    let nix = narinfo(
        "nar/1ymz1dp4x41s8rw1ysmrd9b7hjbdk5s6c5kbhdyqv03wkqhvvzyv.nar.xz",
        Some("xz"),
    );
    // harmonia: nar/<narhash>.nar?hash=<storehash>, uncompressed.
    let harmonia = narinfo(
        "nar/0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0.nar?hash=0c8rfq3blmslvm3w5qd4ymrhng1nkdk9",
        Some("none"),
    );
    // attic: nar/<storehash>.nar, zstd (a 307 to object storage follows).
    let attic = narinfo("nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar", Some("zstd"));
    for (text, url, compression) in [
        (&nix, "nar/1ymz1dp4x41s8rw1ysmrd9b7hjbdk5s6c5kbhdyqv03wkqhvvzyv.nar.xz", "xz"),
        (&harmonia, "nar/0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0.nar?hash=0c8rfq3blmslvm3w5qd4ymrhng1nkdk9", "none"),
        (&attic, "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar", "zstd"),
    ] {
        let info = NarInfo::parse(&path(), text.as_bytes()).expect("narinfo");
        assert_eq!(info.url, url);
        assert_eq!(info.compression, compression);
        assert_eq!(info.file_size, Some(1234));
        assert_eq!(info.nar_size, 5678);
        assert_eq!(info.references.len(), 2);
        assert_eq!(info.references[0].as_str(), format!("/nix/store/{DEP}"));
        assert_eq!(&info.text, text);
    }
}

#[test]
fn compression_defaults_to_bzip2() {
    let text = narinfo("nar/x.nar.bz2", None);
    let info = NarInfo::parse(&path(), text.as_bytes()).expect("narinfo");
    assert_eq!(info.compression, "bzip2");
}

#[test]
fn refuses_what_nix_would_refuse_and_more() {
    let good = narinfo("nar/x.nar.xz", Some("xz"));
    for (field, error) in [
        ("StorePath", NarInfoError::Missing("StorePath")),
        ("URL", NarInfoError::Missing("URL")),
        ("NarHash", NarInfoError::Missing("NarHash")),
        ("NarSize", NarInfoError::Missing("NarSize")),
    ] {
        let text: String = good
            .lines()
            .filter(|line| !line.starts_with(&format!("{field}:")))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            NarInfo::parse(&path(), text.as_bytes()),
            Err(error),
            "{field}"
        );
    }
    let zero = good.replace("NarSize: 5678", "NarSize: 0");
    assert_eq!(
        NarInfo::parse(&path(), zero.as_bytes()),
        Err(NarInfoError::Missing("NarSize"))
    );
    let size = good.replace("FileSize: 1234", "FileSize: lots");
    assert_eq!(
        NarInfo::parse(&path(), size.as_bytes()),
        Err(NarInfoError::Malformed("FileSize"))
    );
    let other: StorePath = "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-hello-2.12"
        .parse()
        .expect("path");
    assert_eq!(
        NarInfo::parse(&other, good.as_bytes()),
        Err(NarInfoError::OtherPath(PATH.into()))
    );
    let long = format!("{good}{}", "X-Padding: y\n".repeat(MAX_NARINFO_BYTES / 10));
    assert_eq!(
        NarInfo::parse(&path(), long.as_bytes()),
        Err(NarInfoError::TooLong)
    );
    let bad_ref = good.replace(DEP, "../../etc/passwd");
    assert_eq!(
        NarInfo::parse(&path(), bad_ref.as_bytes()),
        Err(NarInfoError::Malformed("References"))
    );
    assert_eq!(
        NarInfo::parse(&path(), b"\xff\xfe"),
        Err(NarInfoError::NotText)
    );
}

#[test]
fn staged_names_and_rewritten_url_for_every_compression() {
    for (compression, name) in [
        ("none", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar"),
        ("xz", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.xz"),
        ("bzip2", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.bz2"),
        ("zstd", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.zst"),
        ("br", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.br"),
        ("gzip", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.gz"),
        ("lz4", "nar/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.nar.lz4"),
    ] {
        assert_eq!(staged_nar_name(&path(), compression).as_deref(), Some(name));
        let text = narinfo("https://elsewhere.example/nar/abc?x=1", Some(compression));
        let info = NarInfo::parse(&path(), text.as_bytes()).expect("narinfo");
        let staged = info.with_url(name);
        let expected = text.replace("https://elsewhere.example/nar/abc?x=1", name);
        assert_eq!(staged, expected, "{compression}");
    }
    assert_eq!(staged_nar_name(&path(), "rot13"), None);
}
