//! The `storage` section: the disks in /sys/class/block that sit on a
//! device (not loop, zram or partitions), their partitions, and what udev
//! knows of them, as Incus lists them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::sysfs::{self, Roots};
use crate::api::devices::{Disk, Partition, Storage};

pub fn storage(roots: &Roots) -> Storage {
    let class = roots.sys.join("class/block");
    let names = sysfs::sorted_entries(&class);
    let disks: Vec<Disk> = names
        .iter()
        .filter_map(|name| disk(&class, name, &names, roots))
        .collect();
    Storage {
        total: disks.iter().map(|disk| 1 + disk.partitions.len() as u64).sum(),
        disks,
    }
}

fn disk(class: &Path, name: &str, all: &[String], roots: &Roots) -> Option<Disk> {
    let entry = class.join(name);
    let device = entry.join("device");
    if !device.exists() {
        return None;
    }
    // Multipath members have no `dev`: only the main node counts.
    let number = sysfs::read_trimmed(&entry.join("dev"))?;
    let kind = sysfs::link_name(&device.join("subsystem")).unwrap_or_default();
    if kind == "rbd" {
        // A Ceph image is not a local disk.
        return None;
    }
    let flag = |file: &str| sysfs::read_u64(&entry.join(file)) == Some(1);
    let mut disk = Disk {
        id: name.to_string(),
        device: number,
        model: sysfs::read_trimmed(&device.join("model")).unwrap_or_default(),
        kind,
        read_only: flag("ro"),
        size: sysfs::read_u64(&entry.join("size")).unwrap_or(0) * 512,
        removable: flag("removable"),
        wwn: sysfs::read_trimmed(&entry.join("wwid")).unwrap_or_default(),
        numa_node: sysfs::numa_node(&device),
        firmware_version: sysfs::read_trimmed(&device.join("firmware_rev")).unwrap_or_default(),
        pci_address: sysfs::pci_address(&device).unwrap_or_default(),
        usb_address: sysfs::usb_address(&device).unwrap_or_default(),
        partitions: partitions(class, name, all),
        ..Disk::default()
    };
    if name.starts_with("sr") && disk.removable {
        disk.kind = "cdrom".into();
        // What most drives report without a medium.
        if disk.size == 0x1f_ffff * 512 {
            disk.size = 0;
        }
    }
    disk.device_path = link_to(&roots.dev.join("disk/by-path"), name, roots);
    disk.device_id = link_to(&roots.dev.join("disk/by-id"), name, roots);
    // The physical block size, where the device node can be opened (as
    // Incus asks it with BLKPBSZGET; sysfs holds the same number).
    if fs::File::open(roots.dev.join(name)).is_ok() {
        disk.block_size = sysfs::read_u64(&entry.join("queue/physical_block_size")).unwrap_or(0);
    }
    add_udev(&mut disk, roots);
    if disk.rpm == 0 {
        // Rotational without a known speed: 1.
        disk.rpm = sysfs::read_u64(&entry.join("queue/rotational")).unwrap_or(0);
    }
    Some(disk)
}

/// The entries named `<disk>…` that are partitions.
fn partitions(class: &Path, disk: &str, all: &[String]) -> Vec<Partition> {
    all.iter()
        .filter(|name| name.starts_with(disk))
        .filter_map(|name| {
            let entry = class.join(name);
            let partition = sysfs::read_u64(&entry.join("partition"))?;
            Some(Partition {
                id: name.clone(),
                device: sysfs::read_trimmed(&entry.join("dev")).unwrap_or_default(),
                read_only: sysfs::read_u64(&entry.join("ro")) == Some(1),
                size: sysfs::read_u64(&entry.join("size")).unwrap_or(0) * 512,
                partition,
            })
        })
        .collect()
}

/// The last link in `dir` (sorted) that points at `/dev/<name>`.
fn link_to(dir: &Path, name: &str, roots: &Roots) -> String {
    let target = roots.dev.join(name);
    let target = fs::canonicalize(&target).unwrap_or(target);
    sysfs::sorted_entries(dir)
        .into_iter()
        .rfind(|link| fs::canonicalize(dir.join(link)).is_ok_and(|real| real == target))
        .unwrap_or_default()
}

/// What udev recorded for the disk (`/run/udev/data/b<major>:<minor>`):
/// a finer type, serial, model, firmware and rotation speed.
fn add_udev(disk: &mut Disk, roots: &Roots) {
    let Ok(text) = fs::read_to_string(roots.udev_data.join(format!("b{}", disk.device))) else {
        return;
    };
    let properties: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("E:")?.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect();
    let property = |key: &str| properties.get(key).copied().unwrap_or("");
    if property("ID_CDROM") == "1" {
        disk.kind = "cdrom".into();
    } else if property("ID_USB_DRIVER") == "usb-storage" {
        disk.kind = "usb".into();
    } else if property("ID_ATA_SATA") == "1" {
        disk.kind = "sata".into();
    }
    if disk.firmware_version.is_empty() {
        disk.firmware_version = property("ID_REVISION").to_string();
    }
    disk.serial = [
        "SCSI_IDENT_SERIAL",
        "ID_SCSI_SERIAL",
        "ID_SERIAL_SHORT",
        "ID_SERIAL",
    ]
    .iter()
    .map(|key| property(key))
    .find(|value| !value.is_empty())
    .unwrap_or("")
    .to_string();
    let encoded = udev_decode(property("ID_MODEL_ENC"));
    let model = match encoded.trim() {
        "" => property("ID_MODEL"),
        decoded => decoded,
    };
    if !model.is_empty() {
        disk.model = model.to_string();
    }
    if let Ok(rpm) = property("ID_ATA_ROTATION_RATE_RPM").parse() {
        disk.rpm = rpm;
    }
}

/// udev's `\xNN` escapes undone (its `_ENC` properties keep spaces that way).
fn udev_decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i..i + 4).filter(|b| b.starts_with(b"\\x"));
        match escaped.and_then(|b| u8::from_str_radix(std::str::from_utf8(&b[2..]).ok()?, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn udev_escapes_are_undone() {
        assert_eq!(udev_decode(r"Samsung\x20SSD\x20870"), "Samsung SSD 870");
        assert_eq!(udev_decode(r"plain\x2"), r"plain\x2");
    }

    /// A recorded physical machine: an NVMe disk with two partitions and a
    /// SATA disk udev knows, beside a loop device (not a disk).
    #[test]
    fn recorded_nvme_and_sata_disks_are_read_as_incus_reads_them() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let sys = &roots.sys;
        let pci = sys.join("devices/pci0000:00");
        let nvme = pci.join("0000:01:00.0/nvme/nvme0");
        let sata = pci.join("0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0");
        let function = pci.join("0000:01:00.0");
        for dir in [
            &nvme,
            &sata,
            &sys.join("bus/nvme"),
            &sys.join("bus/scsi"),
            &sys.join("bus/pci"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        symlink(sys.join("bus/nvme"), nvme.join("subsystem")).unwrap();
        // The controller's `device` leads to its PCI function, whose own
        // `device` is the product id.
        symlink(&function, nvme.join("device")).unwrap();
        symlink(sys.join("bus/pci"), function.join("subsystem")).unwrap();
        fs::write(function.join("device"), "0xa80a\n").unwrap();
        symlink(sys.join("bus/scsi"), sata.join("subsystem")).unwrap();
        fs::write(nvme.join("model"), "Samsung SSD 980 PRO 1TB  \n").unwrap();
        fs::write(nvme.join("firmware_rev"), "5B2QGXA7\n").unwrap();
        fs::write(sata.join("model"), "ST4000NM0035-1V4\n").unwrap();
        let class = sys.join("class/block");
        let block = |name: &str, dev: &str, sectors: u64, device: Option<&Path>| {
            let entry = class.join(name);
            fs::create_dir_all(entry.join("queue")).unwrap();
            fs::write(entry.join("dev"), format!("{dev}\n")).unwrap();
            fs::write(entry.join("size"), format!("{sectors}\n")).unwrap();
            fs::write(entry.join("ro"), "0\n").unwrap();
            fs::write(entry.join("removable"), "0\n").unwrap();
            fs::write(entry.join("queue/rotational"), "0\n").unwrap();
            fs::write(entry.join("queue/physical_block_size"), "4096\n").unwrap();
            if let Some(device) = device {
                symlink(device, entry.join("device")).unwrap();
            }
            entry
        };
        let nvme0n1 = block("nvme0n1", "259:0", 1_953_525_168, Some(&nvme));
        fs::write(nvme0n1.join("wwid"), "eui.002538b111b2c3d4\n").unwrap();
        for (n, sectors) in [(1, 1_050_624), (2, 1_952_472_064)] {
            let part = block(&format!("nvme0n1p{n}"), &format!("259:{n}"), sectors, None);
            fs::write(part.join("partition"), format!("{n}\n")).unwrap();
        }
        let sda = block("sda", "8:0", 7_814_037_168, Some(&sata));
        fs::write(sda.join("queue/rotational"), "1\n").unwrap();
        block("loop0", "7:0", 0, None);
        fs::create_dir_all(&roots.dev).unwrap();
        fs::write(roots.dev.join("nvme0n1"), "").unwrap();
        fs::create_dir_all(roots.dev.join("disk/by-id")).unwrap();
        symlink(
            "../../nvme0n1",
            roots.dev.join("disk/by-id/nvme-eui.002538b111b2c3d4"),
        )
        .unwrap();
        fs::create_dir_all(&roots.udev_data).unwrap();
        fs::write(
            roots.udev_data.join("b8:0"),
            "S:disk/by-id/ata-ST4000\nE:ID_ATA_SATA=1\nE:ID_SERIAL_SHORT=ZC18JXYZ\nE:ID_REVISION=TN02\nE:ID_MODEL_ENC=ST4000NM0035-1V4\\x20\\x20\nE:ID_ATA_ROTATION_RATE_RPM=7200\n",
        )
        .unwrap();

        let storage = storage(&roots);
        assert_eq!(storage.total, 4, "two disks, two partitions");
        let (nvme, sata) = (&storage.disks[0], &storage.disks[1]);
        assert_eq!((nvme.id.as_str(), nvme.kind.as_str()), ("nvme0n1", "nvme"));
        assert_eq!(nvme.model, "Samsung SSD 980 PRO 1TB");
        assert_eq!(nvme.size, 1_953_525_168 * 512);
        assert_eq!(
            (nvme.wwn.as_str(), nvme.firmware_version.as_str()),
            ("eui.002538b111b2c3d4", "5B2QGXA7")
        );
        assert_eq!(nvme.device_id, "nvme-eui.002538b111b2c3d4");
        assert_eq!(
            (nvme.pci_address.as_str(), nvme.block_size, nvme.rpm),
            ("0000:01:00.0", 4096, 0)
        );
        let partitions: Vec<(&str, u64)> = nvme
            .partitions
            .iter()
            .map(|p| (p.id.as_str(), p.partition))
            .collect();
        assert_eq!(partitions, [("nvme0n1p1", 1), ("nvme0n1p2", 2)]);
        assert_eq!((sata.kind.as_str(), sata.serial.as_str()), ("sata", "ZC18JXYZ"));
        assert_eq!(
            (sata.model.as_str(), sata.firmware_version.as_str()),
            ("ST4000NM0035-1V4", "TN02")
        );
        // No device node to open: no block size; on the SCSI bus: no PCI
        // address (as Incus).
        assert_eq!(
            (sata.rpm, sata.block_size, sata.pci_address.as_str()),
            (7200, 0, "")
        );
    }
}
