//! The device sections of the document (`pci`, `network`, `storage`,
//! `usb`, `gpu`, `system`), one module each, read from sysfs (and ethtool
//! for network ports) as Incus reads them. `Roots` says where the trees
//! are, so each section is tested on recorded ones.

pub mod cards;
pub mod dmi;
pub mod ethtool;
pub mod gpu;
pub use nodecache_input::ids;
pub mod lshw;
pub mod network;
pub mod nvidia;
pub mod pci;
pub mod storage;
pub mod sysfs;
pub mod tool;
pub mod usb;
