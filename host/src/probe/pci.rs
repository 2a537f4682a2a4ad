//! The `pci` section: every device on the PCI bus, with its driver, NUMA
//! node, IOMMU group and, where the system has the pci.ids database, its
//! vendor and product names, as Incus lists them.

use std::fs;
use std::path::Path;

use super::sysfs::{self, Roots};
use crate::api::devices::{Pci, PciDevice};

/// Where distributions keep pci.ids (the paths Incus's pcidb reads).
const PCI_IDS: &[&str] = &["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

pub fn pci(roots: &Roots) -> Pci {
    let names = PciNames::load();
    let bus = roots.sys.join("bus/pci/devices");
    let devices: Vec<PciDevice> = sysfs::sorted_entries(&bus)
        .into_iter()
        .map(|address| device(&bus.join(&address), address, roots, &names))
        .collect();
    Pci {
        total: devices.len() as u64,
        devices,
    }
}

fn device(path: &Path, address: String, roots: &Roots, names: &PciNames) -> PciDevice {
    let (driver, driver_version) = sysfs::driver(path, &roots.kernel_release).unwrap_or_default();
    let vendor_id = sysfs::id(&path.join("vendor"));
    let product_id = sysfs::id(&path.join("device"));
    let (vendor, product) = names.of(&vendor_id, &product_id);
    PciDevice {
        driver,
        driver_version,
        numa_node: sysfs::numa_node(path),
        iommu_group: sysfs::link_name(&path.join("iommu_group"))
            .and_then(|group| group.parse().ok())
            .unwrap_or(0),
        pci_address: address,
        vendor,
        vendor_id,
        product,
        product_id,
        // Vital product data is read only by root and is not parsed yet:
        // left empty, as for a device that has none.
        vpd: Default::default(),
    }
}

/// The pci.ids database, when installed: vendor and product names by id.
pub struct PciNames {
    text: Option<String>,
}

impl PciNames {
    pub fn load() -> PciNames {
        PciNames {
            text: PCI_IDS.iter().find_map(|path| fs::read_to_string(path).ok()),
        }
    }

    pub fn from_text(text: &str) -> PciNames {
        PciNames {
            text: Some(text.to_string()),
        }
    }

    /// (vendor name, product name); empty where unknown.
    pub fn of(&self, vendor_id: &str, product_id: &str) -> (String, String) {
        let Some(text) = &self.text else {
            return Default::default();
        };
        let mut vendor = None;
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            match (&vendor, line.strip_prefix('\t')) {
                // A vendor line: `8086  Intel Corporation`.
                (_, None) => {
                    if vendor.is_some() {
                        break;
                    }
                    if let Some(name) = named(line, vendor_id) {
                        vendor = Some(name.to_string());
                    }
                }
                // A device line of our vendor: `\t1533  I210 Gigabit ...`
                // (subsystem lines have two tabs and are skipped).
                (Some(vendor), Some(rest)) if !rest.starts_with('\t') => {
                    if let Some(name) = named(rest, product_id) {
                        return (vendor.clone(), name.to_string());
                    }
                }
                _ => {}
            }
        }
        (vendor.unwrap_or_default(), String::new())
    }
}

/// The name on a pci.ids line `id  name` when its id is `id`.
fn named<'a>(line: &'a str, id: &str) -> Option<&'a str> {
    let (line_id, name) = line.split_once("  ")?;
    (!id.is_empty() && line_id.eq_ignore_ascii_case(id)).then(|| name.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "# comment\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\n\t1041  Virtio 1.0 network device\n\t\t1af4 1100  QEMU Virtual Machine\n8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n";

    #[test]
    fn names_come_from_pci_ids() {
        let names = PciNames::from_text(IDS);
        assert_eq!(
            names.of("8086", "1533"),
            (
                "Intel Corporation".into(),
                "I210 Gigabit Network Connection".into()
            )
        );
        assert_eq!(names.of("1af4", "1041").1, "Virtio 1.0 network device");
        assert_eq!(names.of("1af4", "9999"), ("Red Hat, Inc.".into(), String::new()));
        assert_eq!(names.of("abcd", "1533"), Default::default());
        assert_eq!(PciNames { text: None }.of("8086", "1533"), Default::default());
    }

    /// A recorded device: driver from its link, the module's own version,
    /// the IOMMU group from its link, NUMA node -1 read as 0.
    #[test]
    fn a_recorded_device_is_read_as_incus_reads_it() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0-test");
        let devices = root.path().join("sys/devices/pci0000:00");
        let nic = devices.join("0000:03:00.0");
        fs::create_dir_all(&nic).unwrap();
        let drivers = root.path().join("sys/bus/pci/drivers");
        fs::create_dir_all(drivers.join("igb/module")).unwrap();
        fs::write(drivers.join("igb/module/version"), "5.4.0-k\n").unwrap();
        let groups = root.path().join("sys/kernel/iommu_groups/17");
        fs::create_dir_all(&groups).unwrap();
        std::os::unix::fs::symlink(drivers.join("igb"), nic.join("driver")).unwrap();
        std::os::unix::fs::symlink(&groups, nic.join("iommu_group")).unwrap();
        fs::write(nic.join("vendor"), "0x8086\n").unwrap();
        fs::write(nic.join("device"), "0x1533\n").unwrap();
        fs::write(nic.join("numa_node"), "-1\n").unwrap();
        let bus = root.path().join("sys/bus/pci/devices");
        fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(&nic, bus.join("0000:03:00.0")).unwrap();

        let device = device(
            &bus.join("0000:03:00.0"),
            "0000:03:00.0".into(),
            &roots,
            &PciNames::from_text(IDS),
        );
        assert_eq!(
            (device.driver.as_str(), device.driver_version.as_str()),
            ("igb", "5.4.0-k")
        );
        assert_eq!((device.iommu_group, device.numa_node), (17, 0));
        assert_eq!(
            (device.vendor_id.as_str(), device.product_id.as_str()),
            ("8086", "1533")
        );
        assert_eq!(device.product, "I210 Gigabit Network Connection");
        let section = pci(&roots);
        assert_eq!(section.total, 1);
        assert_eq!(section.devices[0].pci_address, "0000:03:00.0");
    }
}
