//! The walk Incus makes for network cards and GPUs alike: first the devices
//! a class directory shows (`/sys/class/net/*`, DRM `cardN`), one card per
//! PCI function; then the PCI functions of the section's class that none
//! of them showed (unbound, or bound to vfio-pci for a guest); SR-IOV
//! virtual functions nested under their parent card.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::sysfs::{self, Roots};
use crate::api::devices::Sriov;

/// A card the walk can nest virtual functions under.
pub trait Card: Sized {
    fn pci_address(&self) -> &str;
    fn sriov(&mut self) -> Option<&mut Sriov<Self>>;
}

/// A function's SR-IOV counts (`sriov_numvfs`, `sriov_totalvfs`); none
/// where it has no SR-IOV. Its virtual functions are nested by [`walk`].
pub fn sriov<C>(dir: &Path) -> Option<Sriov<C>> {
    sysfs::read_u64(&dir.join("sriov_numvfs")).map(|current| Sriov {
        current_vfs: current,
        maximum_vfs: sysfs::read_u64(&dir.join("sriov_totalvfs")).unwrap_or(0),
        vfs: None,
    })
}

/// The cards of one section and its `total` (cards and their virtual
/// functions, as Incus counts). `devices` are the class directory's
/// `device` links in order; `pci_class` is the class code's prefix
/// (`0x02` network, `0x03` display); `make` reads one card, given its
/// device directory and PCI address (empty off the PCI bus).
pub fn walk<C: Card>(
    roots: &Roots,
    devices: impl IntoIterator<Item = PathBuf>,
    pci_class: &str,
    mut make: impl FnMut(&Path, String) -> C,
) -> (Vec<C>, u64) {
    let mut cards = Vec::new();
    // Virtual functions, by their parent's PCI address.
    let mut functions: BTreeMap<String, Vec<C>> = BTreeMap::new();
    let mut place = |card: C, device: &Path| match sysfs::link_name(&device.join("physfn")) {
        Some(parent) => functions.entry(parent).or_default().push(card),
        None => cards.push(card),
    };
    let mut known = BTreeSet::new();
    for device in devices {
        let pci_address = sysfs::pci_address(&device).unwrap_or_default();
        // A function with several interfaces or DRM cards is one card.
        if !pci_address.is_empty() && !known.insert(pci_address.clone()) {
            continue;
        }
        place(make(&device, pci_address), &device);
    }
    let bus = roots.sys.join("bus/pci/devices");
    for address in sysfs::sorted_entries(&bus) {
        let device = bus.join(&address);
        let in_class =
            sysfs::read_trimmed(&device.join("class")).is_some_and(|class| class.starts_with(pci_class));
        if in_class && !known.contains(&address) {
            place(make(&device, address), &device);
        }
    }
    let mut total = 0;
    for card in &mut cards {
        let address = card.pci_address().to_string();
        if let Some(sriov) = card.sriov() {
            let vfs = functions.remove(&address).unwrap_or_default();
            total += vfs.len() as u64;
            sriov.vfs = (!vfs.is_empty()).then_some(vfs);
        }
        total += 1;
    }
    (cards, total)
}
