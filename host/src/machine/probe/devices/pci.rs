//! The `pci` section: every device on the PCI bus, with its driver, NUMA
//! node, IOMMU group and, where the system has the pci.ids database, its
//! vendor and product names, as Incus lists them.

use std::fs;
use std::path::Path;

use super::ids::IdDatabase;
use super::sysfs::{self, Roots};
use crate::api::devices::{Pci, PciDevice, PciVpd};

pub fn pci(roots: &Roots, names: &IdDatabase) -> Pci {
    let bus = roots.sys.join("bus/pci/devices");
    let devices: Vec<PciDevice> = sysfs::sorted_entries(&bus)
        .into_iter()
        .map(|address| device(&bus.join(&address), address, roots, names))
        .collect();
    Pci {
        total: devices.len() as u64,
        devices,
    }
}

fn device(path: &Path, address: String, roots: &Roots, names: &IdDatabase) -> PciDevice {
    let (driver, driver_version) = sysfs::driver(path, &roots.kernel_release).unwrap_or_default();
    let vendor_id = sysfs::id(&path.join("vendor"));
    let product_id = sysfs::id(&path.join("device"));
    let (vendor, product) = names.device(&vendor_id, &product_id);
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
        // Vital product data: readable by root only; otherwise empty, as
        // Incus leaves it.
        vpd: read_vpd(&path.join("vpd"))
            .map(|bytes| parse_vpd(&bytes))
            .unwrap_or_default(),
    }
}

/// The most a device's VPD can hold (its address field is 15 bits).
const VPD_BYTES: u64 = 32 << 10;

fn read_vpd(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(VPD_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// VPD keywords Incus reports: vendor-specific (`V*`), system-specific
/// (`Y*`), `Z*`, and the standard identity fields.
fn vpd_keyword_kept(key: &str) -> bool {
    matches!(key.as_bytes().first(), Some(b'V' | b'Y' | b'Z'))
        || ["CC", "EC", "FC", "FN", "MN", "NA", "PN", "RM", "SN"].contains(&key)
}

/// PCI vital product data (PCI Local Bus 3.0, section 6.4): the identifier
/// string (tag 0x82) is the product name, the read-only (0x90) and
/// read-write (0x91) resources hold `keyword, length, value` entries. Read
/// as Incus reads it, but never past the data: a truncated or lying length
/// ends the parse.
pub fn parse_vpd(mut bytes: &[u8]) -> PciVpd {
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .trim_matches(['\0', ' '])
            .to_string()
    };
    let mut vpd = PciVpd::default();
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        let length = if tag & 0x80 != 0 {
            let Some((low_high, rest)) = bytes.split_first_chunk::<2>() else {
                break;
            };
            bytes = rest;
            usize::from(u16::from_le_bytes(*low_high))
        } else {
            usize::from(tag & 0x07)
        };
        let (value, rest) = bytes.split_at(length.min(bytes.len()));
        match tag {
            0x82 => vpd.product_name = text(value),
            0x90 | 0x91 => {
                let mut entries = value;
                while entries.len() >= 3 {
                    let (key, size) = (text(&entries[..2]), usize::from(entries[2]));
                    let end = (3 + size).min(entries.len());
                    if size > 0 && vpd_keyword_kept(&key) {
                        vpd.entries.insert(key, text(&entries[3..end]));
                    }
                    entries = &entries[end..];
                }
            }
            _ => {}
        }
        bytes = rest;
    }
    vpd
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "# comment\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\n\t1041  Virtio 1.0 network device\n\t\t1af4 1100  QEMU Virtual Machine\n8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n";

    #[test]
    fn names_come_from_pci_ids() {
        let names = IdDatabase::from_text(IDS);
        assert_eq!(
            names.device("8086", "1533"),
            (
                "Intel Corporation".into(),
                "I210 Gigabit Network Connection".into()
            )
        );
        assert_eq!(names.device("1af4", "1041").1, "Virtio 1.0 network device");
        assert_eq!(
            names.device("1af4", "9999"),
            ("Red Hat, Inc.".into(), String::new())
        );
        assert_eq!(names.device("abcd", "1533"), Default::default());
    }

    /// The VPD of an Intel X710 as `lspci -vv` shows it: product name, part
    /// and serial numbers, a vendor field, a checksum (`RV`, not kept), the
    /// end tag; then a truncated blob and one whose length lies.
    #[test]
    fn vital_product_data_is_parsed_as_incus_parses_it() {
        let mut blob = vec![0x82, 25, 0];
        blob.extend_from_slice(b"XL710 40GbE Controller   ");
        let mut read_only = Vec::new();
        for (key, value) in [
            ("PN", "X710DA2"),
            ("SN", "A4BF01234567"),
            ("V0", "FFV21.5.9"),
            ("RV", "\u{1}"),
        ] {
            read_only.extend_from_slice(key.as_bytes());
            read_only.push(value.len() as u8);
            read_only.extend_from_slice(value.as_bytes());
        }
        blob.extend_from_slice(&[0x90, read_only.len() as u8, 0]);
        blob.extend_from_slice(&read_only);
        blob.push(0x78);
        let vpd = parse_vpd(&blob);
        assert_eq!(vpd.product_name, "XL710 40GbE Controller");
        let entries: Vec<(&str, &str)> = vpd
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            entries,
            [("PN", "X710DA2"), ("SN", "A4BF01234567"), ("V0", "FFV21.5.9")]
        );
        assert_eq!(parse_vpd(&blob[..10]).product_name, "XL710 4");
        assert_eq!(
            parse_vpd(&[0x90, 0xff, 0xff, b'S', b'N', 200, b'x']).entries["SN"],
            "x"
        );
        assert_eq!(parse_vpd(&[]), PciVpd::default());
        assert_eq!(serde_json::to_string(&parse_vpd(&[0x78])).unwrap(), "{}");
    }

    /// Any bytes at all (a device's VPD is outside input): no panic, no
    /// entry of more characters than the data has bytes.
    #[test]
    fn any_bytes_parse_without_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let len = round % 64;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    // Bias towards the tags the parser acts on.
                    match state >> 61 {
                        0 => 0x82,
                        1 => 0x90,
                        _ => (state >> 33) as u8,
                    }
                })
                .collect();
            let vpd = parse_vpd(&bytes);
            assert!(vpd.entries.values().all(|value| value.chars().count() <= len));
        }
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
            &IdDatabase::from_text(IDS),
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
        let section = pci(&roots, &IdDatabase::from_text(IDS));
        assert_eq!(section.total, 1);
        assert_eq!(section.devices[0].pci_address, "0000:03:00.0");
    }
}
