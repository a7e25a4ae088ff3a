//! The builder's binary cache over HTTPS as well: the lab's cache server
//! (`lab serve-cache --tls-certificate ... --tls-key ...`) on a second
//! port, serving the same directory with a certificate the test's CA
//! signed for the builder's address. A client trusts it only when told to
//! (push's `ca_file`, Nix's `ssl-cert-file`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use crate::lab::{wait_for_port, Lab};
use crate::tls::ServerIdentity;

/// The HTTPS cache's port on the builder.
pub const CACHE_HTTPS_PORT: u16 = 5443;

/// The supervised program's name.
const NAME: &str = "cache-server-https";

impl Lab {
    /// Where the HTTPS cache listens.
    pub fn https_cache_address(&self) -> SocketAddr {
        SocketAddr::new(self.builder().address.into(), CACHE_HTTPS_PORT)
    }

    /// The HTTPS cache's URL, `https://198.18.N.2:5443`.
    pub fn https_cache_url(&self) -> String {
        format!("https://{}", self.https_cache_address())
    }

    /// Starts serving the cache over HTTPS with `identity` (which must be
    /// for the builder's address), supervised like the HTTP one; returns
    /// its URL.
    pub fn start_https_cache(&mut self, identity: &ServerIdentity) -> Result<String> {
        let listen = self.https_cache_address();
        let serve: Vec<OsString> = vec![
            self.lab_binary().as_os_str().to_owned(),
            "serve-cache".into(),
            "--root".into(),
            self.cache_dir().into_os_string(),
            "--listen".into(),
            listen.to_string().into(),
            "--tls-certificate".into(),
            identity.certificate.clone().into_os_string(),
            "--tls-key".into(),
            identity.key.clone().into_os_string(),
        ];
        let builder = self.builder().clone();
        self.supervise(&builder, NAME, serve)?;
        wait_for_port(listen, Duration::from_secs(10))?;
        Ok(self.https_cache_url())
    }

    /// Stops the HTTPS cache server.
    pub fn stop_https_cache(&mut self) -> Result<()> {
        let builder = self.builder().clone();
        self.stop_supervised(&builder, NAME)
    }
}
