//! `_hap._tcp` DNS-SD advertisement with `mdns-sd` (protocol notes §1.2).
//!
//! A multicast failure is logged, never fatal: controllers that know the address (or a
//! paired hub with a cached address) still connect.

use mdns_sd::{ServiceDaemon, ServiceInfo};
use tracing::{debug, warn};

/// The DNS-SD service type of HAP over IP.
pub const SERVICE_TYPE: &str = "_hap._tcp.local.";

/// Publishes (and re-publishes on change) one accessory server.
pub struct Advertiser {
    daemon: Option<ServiceDaemon>,
    port: u16,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("running", &self.daemon.is_some())
            .field("port", &self.port)
            .finish()
    }
}

impl Advertiser {
    /// Starts the mDNS responder for a server on `port`. On failure it logs and returns an
    /// advertiser that does nothing.
    pub fn new(port: u16) -> Self {
        let daemon = match ServiceDaemon::new() {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(error = %e, "mDNS unavailable; the accessory will not be discoverable");
                None
            }
        };
        Self { daemon, port }
    }

    /// Registers (or replaces) the service `name` with `txt`.
    pub fn publish(&self, name: &str, txt: &[(&'static str, String)]) {
        let Some(daemon) = &self.daemon else {
            return;
        };
        // brutella/hap replaces spaces: some iOS versions mishandle them in the Host header.
        let host: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let host = format!("{host}.local.");
        let props: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match ServiceInfo::new(SERVICE_TYPE, name, &host, "", self.port, &props[..]) {
            Ok(info) => {
                if let Err(e) = daemon.register(info.enable_addr_auto()) {
                    warn!(error = %e, "mDNS register failed");
                } else {
                    debug!(?txt, "mDNS published");
                }
            }
            Err(e) => warn!(error = %e, "mDNS service info rejected"),
        }
    }

    /// Stops the responder (sends goodbye packets).
    pub fn shutdown(&self) {
        if let Some(d) = &self.daemon {
            let _ = d.shutdown();
        }
    }
}
