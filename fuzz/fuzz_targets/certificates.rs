//! A PEM file given to `trust add`, `--tls-cert` or a member's `server-cert`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|pem: &[u8]| {
    if let Ok(certs) = nodecache_input::pem::certs_from_pem(pem) {
        for cert in certs {
            let _ = nodecache_input::pem::fingerprint(cert.as_ref());
        }
    }
});
