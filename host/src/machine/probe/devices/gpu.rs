//! The `gpu` section: cards from /sys/class/drm, then display-class PCI
//! functions without a DRM card (bound to vfio-pci, or NVIDIA's driver),
//! with DRM nodes, SR-IOV virtual functions, mediated-device profiles and
//! what NVIDIA's driver says of its cards (`nvidia`), as Incus lists them.

use std::collections::BTreeMap;
use std::path::Path;

use super::cards;
use super::ids::IdDatabase;
use super::nvidia::NvidiaCards;
use super::sysfs::{self, Roots};
use crate::api::devices::{Gpu, GpuCard, GpuDrm, GpuMdev, Sriov};

pub fn gpu(roots: &Roots, names: &IdDatabase) -> Gpu {
    let nvidia = NvidiaCards::read(roots);
    let class = roots.sys.join("class/drm");
    // Cards, not render nodes or connectors (`card0-HDMI-A-1` has no `dev`).
    let devices = sysfs::sorted_entries(&class)
        .into_iter()
        .filter(|name| name.starts_with("card"))
        .map(|name| class.join(name))
        .filter(|entry| entry.join("dev").exists())
        .map(|entry| entry.join("device"));
    let (cards, total) = cards::walk(roots, devices, "0x03", |device, pci_address| {
        card(device, pci_address, roots, names, &nvidia)
    });
    Gpu { cards, total }
}

impl cards::Card for GpuCard {
    fn pci_address(&self) -> &str {
        &self.pci_address
    }
    fn sriov(&mut self) -> Option<&mut Sriov<GpuCard>> {
        self.sriov.as_mut()
    }
}

fn card(
    device: &Path,
    pci_address: String,
    roots: &Roots,
    names: &IdDatabase,
    nvidia: &NvidiaCards,
) -> GpuCard {
    // Nested devices (a USB display adapter): the innermost directory.
    let dir = sysfs::device_dir(device);
    let mut card = GpuCard {
        pci_address,
        numa_node: sysfs::numa_node(&dir),
        sriov: cards::sriov(&dir),
        ..GpuCard::default()
    };
    if dir.join("device/busnum").exists() {
        card.usb_address = sysfs::usb_address(&dir.join("device")).unwrap_or_default();
    } else {
        card.vendor_id = sysfs::id(&dir.join("vendor"));
        card.product_id = sysfs::id(&dir.join("device"));
        (card.vendor, card.product) = names.device(&card.vendor_id, &card.product_id);
    }
    if let Some((driver, version)) = sysfs::driver(&dir, &roots.kernel_release) {
        (card.driver, card.driver_version) = (driver, version);
    }
    if card.driver == "nvidia" && !card.pci_address.is_empty() {
        card.nvidia = nvidia.card(&card.pci_address);
    }
    card.drm = drm(&dir.join("drm"));
    card.mdev = mdev_profiles(&dir.join("mdev_supported_types"));
    card
}

/// The card's DRM nodes: `cardN`, `controlDN`, `renderDN` and their numbers.
fn drm(dir: &Path) -> Option<GpuDrm> {
    if !dir.exists() {
        return None;
    }
    let mut drm = GpuDrm::default();
    for name in sysfs::sorted_entries(dir) {
        let device = sysfs::read_trimmed(&dir.join(&name).join("dev")).unwrap_or_default();
        if let Some(number) = name.strip_prefix("card") {
            drm.id = number.parse().unwrap_or(0);
            drm.card_name = name;
            drm.card_device = device;
        } else if name.starts_with("controlD") {
            drm.control_name = name;
            drm.control_device = device;
        } else if name.starts_with("renderD") {
            drm.render_name = name;
            drm.render_device = device;
        }
    }
    Some(drm)
}

/// Mediated-device profiles, by their directory name.
fn mdev_profiles(dir: &Path) -> BTreeMap<String, GpuMdev> {
    sysfs::sorted_entries(dir)
        .into_iter()
        .map(|profile| {
            let path = dir.join(&profile);
            let devices = path.join("devices");
            let mdev = GpuMdev {
                api: sysfs::read_trimmed(&path.join("device_api")).unwrap_or_default(),
                available: sysfs::read_u64(&path.join("available_instances")).unwrap_or(0),
                name: sysfs::read_trimmed(&path.join("name")).unwrap_or_default(),
                description: sysfs::read_trimmed(&path.join("description")).unwrap_or_default(),
                devices: devices.exists().then(|| sysfs::sorted_entries(&devices)),
            };
            (profile, mdev)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A recorded workstation: an Intel iGPU driving the display (DRM card,
    /// control and render nodes, i915 GVT-g profiles) and an NVIDIA card on
    /// its proprietary driver (no DRM card, described in /proc).
    #[test]
    fn recorded_intel_and_nvidia_gpus() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let sys = &roots.sys;
        let pci = sys.join("devices/pci0000:00");
        fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        fs::create_dir_all(sys.join("class/drm")).unwrap();
        let write = |dir: &Path, files: &[(&str, &str)]| {
            fs::create_dir_all(dir).unwrap();
            for (file, value) in files {
                fs::write(dir.join(file), format!("{value}\n")).unwrap();
            }
        };
        let function = |address: &str, vendor: &str, product: &str, driver: &str| {
            let dir = pci.join(address);
            write(
                &dir,
                &[("vendor", vendor), ("device", product), ("class", "0x030000")],
            );
            symlink(sys.join("bus/pci"), dir.join("subsystem")).unwrap();
            let drivers = sys.join("bus/pci/drivers").join(driver);
            fs::create_dir_all(&drivers).unwrap();
            symlink(&drivers, dir.join("driver")).unwrap();
            symlink(&dir, sys.join("bus/pci/devices").join(address)).unwrap();
            dir
        };
        let intel = function("0000:00:02.0", "0x8086", "0x5916", "i915");
        for (node, number) in [
            ("card0", "226:0"),
            ("controlD64", "226:64"),
            ("renderD128", "226:128"),
        ] {
            write(&intel.join("drm").join(node), &[("dev", number)]);
        }
        symlink(intel.join("drm/card0"), sys.join("class/drm/card0")).unwrap();
        symlink(&intel, intel.join("drm/card0/device")).unwrap();
        write(&sys.join("class/drm/card0-HDMI-A-1"), &[]);
        let profile = intel.join("mdev_supported_types/i915-GVTg_V5_8");
        write(
            &profile,
            &[
                ("device_api", "vfio-pci"),
                ("available_instances", "2"),
                ("name", "GVTg_V5_8"),
            ],
        );
        fs::create_dir_all(profile.join("devices")).unwrap();
        let nvidia = function("0000:01:00.0", "0x10de", "0x1287", "nvidia");
        write(
            &roots.proc.join("driver/nvidia/gpus/0000:01:00.0"),
            &[(
                "information",
                "Model: \t\t GeForce GT 730\nIRQ:   130\nDevice Minor: \t 0",
            )],
        );
        let _ = nvidia;

        let gpu = gpu(&roots, &IdDatabase::from_text(""));
        assert_eq!(gpu.total, 2);
        let (intel, nvidia) = (&gpu.cards[0], &gpu.cards[1]);
        assert_eq!(
            (intel.pci_address.as_str(), intel.driver.as_str()),
            ("0000:00:02.0", "i915")
        );
        assert_eq!(intel.driver_version, "6.1.0");
        let drm = intel.drm.as_ref().unwrap();
        assert_eq!(
            (drm.id, drm.card_device.as_str(), drm.render_name.as_str()),
            (0, "226:0", "renderD128")
        );
        let gvt = &intel.mdev["i915-GVTg_V5_8"];
        assert_eq!(
            (gvt.api.as_str(), gvt.available, gvt.devices.as_deref()),
            ("vfio-pci", 2, Some(&[][..]))
        );
        assert_eq!(
            (nvidia.pci_address.as_str(), nvidia.product_id.as_str()),
            ("0000:01:00.0", "1287")
        );
        assert!(nvidia.drm.is_none());
        let model = nvidia.nvidia.as_ref().unwrap();
        assert_eq!(
            (model.brand.as_str(), model.model.as_str()),
            ("GeForce", "GeForce GT 730")
        );
        assert_eq!(
            (model.card_name.as_str(), model.card_device.as_str()),
            ("nvidia0", "195:0")
        );
    }
}
