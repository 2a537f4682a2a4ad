//! Reading the kernel's device tree: where it is (so tests point the probes
//! at recorded trees), small typed reads, and the questions every device
//! section asks (its driver, the PCI or USB device it sits on).

use std::fs;
use std::path::{Path, PathBuf};

/// Where the device probes look: `/sys`, `/proc`, `/dev`, and udev's database.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sys: PathBuf,
    pub proc: PathBuf,
    pub dev: PathBuf,
    pub udev_data: PathBuf,
    /// The running kernel's release: a built-in driver's version, as Incus reports it.
    pub kernel_release: String,
    /// NVIDIA's `nvidia-container-cli`, asked for its cards' details where
    /// the driver lists cards; none for a recorded tree.
    pub nvidia_container_cli: Option<PathBuf>,
    /// `lshw`, asked for the machine's identity where there is no DMI
    /// table; none for a recorded tree.
    pub lshw: Option<PathBuf>,
}

impl Roots {
    /// This machine's.
    pub fn local() -> Roots {
        Roots {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            dev: PathBuf::from("/dev"),
            udev_data: PathBuf::from("/run/udev/data"),
            kernel_release: read_trimmed(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default(),
            nvidia_container_cli: Some(PathBuf::from("nvidia-container-cli")),
            lshw: Some(PathBuf::from("lshw")),
        }
    }

    /// A recorded tree: `<root>/sys`, `<root>/proc`, `<root>/dev`, `<root>/run/udev/data`.
    #[cfg(test)]
    pub fn under(root: &Path, kernel_release: &str) -> Roots {
        Roots {
            sys: root.join("sys"),
            proc: root.join("proc"),
            dev: root.join("dev"),
            udev_data: root.join("run/udev/data"),
            kernel_release: kernel_release.to_string(),
            nvidia_container_cli: None,
            lshw: None,
        }
    }
}

/// A sysfs attribute, trimmed; `None` when absent or unreadable.
pub fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|text| text.trim().to_string())
}

pub fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// A NUMA node as Incus records it: the kernel's -1 (no node) is 0.
pub fn numa_node(device: &Path) -> u64 {
    read_trimmed(&device.join("numa_node"))
        .and_then(|text| text.parse::<i64>().ok())
        .map_or(0, |node| node.max(0) as u64)
}

/// A PCI or USB id file (`0x8086`) without its prefix.
pub fn id(path: &Path) -> String {
    read_trimmed(path)
        .map(|text| text.trim_start_matches("0x").to_string())
        .unwrap_or_default()
}

/// The last component of where a link points.
pub fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// A device's driver and its version: the module's `version`, or for a
/// driver built into the kernel (no version file) the kernel's release.
pub fn driver(device: &Path, kernel_release: &str) -> Option<(String, String)> {
    let link = device.join("driver");
    let name = link_name(&link)?;
    let version = read_trimmed(&link.join("module/version")).unwrap_or_else(|| kernel_release.to_string());
    Some((name, version))
}

/// The directory holding a device's own attributes: `device` links are
/// followed while they lead to directories (a disk's `device` is its
/// controller's, an NVMe namespace's leads through the controller to the
/// PCI function), and not into a `device` file, which is an id.
pub fn device_dir(path: &Path) -> PathBuf {
    let mut dir = path.to_path_buf();
    while dir.join("device").is_dir() {
        dir = dir.join("device");
    }
    dir
}

/// The PCI address of a device, as Incus finds it: the device directory's
/// own when it is on the PCI bus, its parent's when it is a virtio device
/// (a virtio disk or NIC sits on a virtio-pci function); none otherwise (a
/// SATA disk is on the SCSI bus).
pub fn pci_address(device: &Path) -> Option<String> {
    let dir = device_dir(device);
    let mut real = fs::canonicalize(&dir).ok()?;
    let subsystem_of = |dir: &Path| link_name(&dir.join("subsystem"));
    let mut subsystem = subsystem_of(&real)?;
    if subsystem == "virtio" {
        real = real.parent()?.to_path_buf();
        subsystem = subsystem_of(&real)?;
    }
    (subsystem == "pci").then(|| real.file_name()?.to_str().map(str::to_string))?
}

/// The USB device `device` sits on, as `bus:device`.
pub fn usb_address(device: &Path) -> Option<String> {
    let real = fs::canonicalize(device).ok()?;
    if !real.to_string_lossy().contains("/usb") {
        return None;
    }
    real.ancestors().find_map(|dir| {
        let bus = read_u64(&dir.join("busnum"))?;
        let number = read_u64(&dir.join("devnum"))?;
        Some(format!("{bus}:{number}"))
    })
}

/// The names in a directory, sorted (as Go's `os.ReadDir` lists them);
/// none when it is absent.
pub fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A USB stick's SCSI disk: on USB bus 1 as device 5, and (on the SCSI
    /// bus) no PCI address; a virtio NIC: its virtio-pci function's.
    #[test]
    fn devices_find_their_usb_and_pci_addresses_as_incus_does() {
        let root = tempfile::tempdir().unwrap();
        let bus = root.path().join("bus");
        for name in ["pci", "scsi", "virtio"] {
            fs::create_dir_all(bus.join(name)).unwrap();
        }
        let pci = root.path().join("devices/pci0000:00");
        let usb = pci.join("0000:00:14.0/usb1/1-2");
        let disk = usb.join("1-2:1.0/host6/target6:0:0/6:0:0:0");
        fs::create_dir_all(&disk).unwrap();
        std::os::unix::fs::symlink(bus.join("scsi"), disk.join("subsystem")).unwrap();
        fs::write(usb.join("busnum"), "1\n").unwrap();
        fs::write(usb.join("devnum"), "5\n").unwrap();
        assert_eq!(usb_address(&disk).as_deref(), Some("1:5"));
        assert_eq!(pci_address(&disk), None);

        let function = pci.join("0000:00:03.0");
        let virtio = function.join("virtio2");
        fs::create_dir_all(&virtio).unwrap();
        std::os::unix::fs::symlink(bus.join("pci"), function.join("subsystem")).unwrap();
        std::os::unix::fs::symlink(bus.join("virtio"), virtio.join("subsystem")).unwrap();
        fs::write(virtio.join("device"), "0x0001\n").unwrap();
        assert_eq!(device_dir(&virtio), virtio, "a device file is an id, not a link");
        assert_eq!(pci_address(&virtio).as_deref(), Some("0000:00:03.0"));
        assert_eq!(usb_address(&virtio), None);
    }
}
