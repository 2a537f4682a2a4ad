//! nodecache's end-to-end tests, one binary as ripgrep has: the real
//! `nodecache` binary, real policy components, real `serve` processes on
//! loopback, a real Incus daemon. `util` holds what they share.

mod cli;
mod cluster;
mod defaults;
mod first_hour;
mod hypervisor;
mod incus;
mod listen;
mod nfd;
mod outputs;
mod policies;
mod prometheus;
mod promises;
mod recorded_sysfs;
mod server_limits;
mod serving;
mod util;
mod watching;
