//! The device sections of the document (`pci`, `network`, `storage`,
//! `usb`, `gpu`, `system`), one module each, read from sysfs (and ethtool
//! for network ports) as Incus reads them. `Roots` says where the trees
//! are, so each section is tested on recorded ones.

pub(crate) mod cards;
pub(crate) mod dmi;
pub(crate) mod ethtool;
pub(crate) mod gpu;
pub use nodecache_input::ids;
pub(crate) mod lshw;
pub(crate) mod network;
pub(crate) mod nvidia;
pub(crate) mod pci;
pub(crate) mod storage;
pub(crate) mod sysfs;
pub(crate) mod tool;
pub(crate) mod usb;
