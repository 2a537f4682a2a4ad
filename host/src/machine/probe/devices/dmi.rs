//! The `system` section: the machine's DMI identity from
//! /sys/class/dmi/id (or lshw's view of it, `lshw`, where there is none),
//! and whether it is a container, a virtual machine or physical, decided
//! as `systemd-detect-virt` decides it (which is what Incus runs) but
//! without running it: two processes cost more than the rest of the probe.

use std::path::Path;

use super::lshw;
use super::sysfs::{self, Roots};
use crate::api::devices::{Chassis, Firmware, Motherboard, System};

/// SMBIOS chassis types (DMTF DSP0134), by number.
const CHASSIS_TYPES: &[&str] = &[
    "",
    "Other",
    "Unknown",
    "Desktop",
    "Low Profile Desktop",
    "Pizza Box",
    "Mini Tower",
    "Tower",
    "Portable",
    "Laptop",
    "Notebook",
    "Hand Held",
    "Docking Station",
    "All in One",
    "Sub Notebook",
    "Space-saving",
    "Lunch Box",
    "Main Server Chassis",
    "Expansion Chassis",
    "SubChassis",
    "Bus Expansion Chassis",
    "Peripheral Chassis",
    "RAID Chassis",
    "Rack Mount Chassis",
    "Sealed-case PC",
    "Multi-system chassis",
    "Compact PCI",
    "Advanced TCA",
    "Blade",
    "Blade Enclosure",
    "Tablet",
    "Convertible",
    "Detachable",
    "IoT Gateway",
    "Embedded PC",
    "Mini PC",
    "Stick PC",
];

/// DMI vendors and products of hypervisors (systemd's list, by substring).
const VM_DMI: &[&str] = &[
    "KVM",
    "OpenStack",
    "KubeVirt",
    "Amazon EC2",
    "QEMU",
    "VMware",
    "VMW",
    "innotek GmbH",
    "VirtualBox",
    "Xen",
    "Bochs",
    "Parallels",
    "BHYVE",
    "Hyper-V",
    "Apple Virtualization",
    "Google Compute Engine",
];

/// Where the machine runs, as files show it (`root` is `/` on a real machine).
pub struct Virtualization<'a> {
    pub root: &'a Path,
    pub roots: &'a Roots,
    /// CPUID's "running under a hypervisor" bit.
    pub hypervisor_bit: bool,
}

impl Virtualization<'_> {
    /// `container`, `virtual-machine` or `physical`.
    pub fn kind(&self) -> &'static str {
        if self.in_container() {
            "container"
        } else if self.in_vm() {
            "virtual-machine"
        } else {
            "physical"
        }
    }

    fn in_container(&self) -> bool {
        let at = |path: &str| self.root.join(path);
        let read = |path: &str| std::fs::read_to_string(at(path)).unwrap_or_default();
        (at("proc/vz").exists() && !at("proc/bc").exists())
            || ["Microsoft", "WSL"]
                .iter()
                .any(|word| read("proc/sys/kernel/osrelease").contains(word))
            || !read("run/host/container-manager").trim().is_empty()
            || !read("run/systemd/container").trim().is_empty()
            || read("proc/1/environ")
                .split('\0')
                .any(|var| var.starts_with("container="))
            || at("run/.containerenv").exists()
            || at(".dockerenv").exists()
    }

    fn in_vm(&self) -> bool {
        let dmi = self.roots.sys.join("class/dmi/id");
        let dmi_says = [
            "product_name",
            "sys_vendor",
            "board_vendor",
            "bios_vendor",
            "product_version",
        ]
        .iter()
        .filter_map(|file| sysfs::read_trimmed(&dmi.join(file)))
        .any(|value| VM_DMI.iter().any(|vm| value.contains(vm)));
        self.hypervisor_bit
            || dmi_says
            || self.root.join("proc/xen").exists()
            || sysfs::read_trimmed(&self.roots.sys.join("hypervisor/type")).is_some_and(|t| !t.is_empty())
    }
}

pub fn system(roots: &Roots, kind: &str) -> System {
    let dmi = roots.sys.join("class/dmi/id");
    let mut system = System {
        kind: kind.to_string(),
        ..System::default()
    };
    if !dmi.exists() {
        // No DMI table (many VMs and Arm boards): lshw, as Incus falls back
        // to; without it only the kind is known.
        let from_lshw = roots.lshw.as_deref().and_then(lshw::local);
        return from_lshw.map_or(system, |found| System {
            kind: kind.to_string(),
            ..found
        });
    }
    let read = |file: &str| sysfs::read_trimmed(&dmi.join(file)).unwrap_or_default();
    system.uuid = read("product_uuid");
    system.vendor = read("sys_vendor");
    system.product = read("product_name");
    system.family = read("product_family");
    system.version = read("product_version");
    system.sku = read("product_sku");
    system.serial = read("product_serial");
    system.firmware = Some(Firmware {
        vendor: read("bios_vendor"),
        date: read("bios_date"),
        version: read("bios_version"),
    });
    system.chassis = Some(Chassis {
        vendor: read("chassis_vendor"),
        kind: sysfs::read_u64(&dmi.join("chassis_type"))
            .and_then(|n| CHASSIS_TYPES.get(n as usize))
            .unwrap_or(&"")
            .to_string(),
        serial: read("chassis_serial"),
        version: read("chassis_version"),
    });
    system.motherboard = Some(Motherboard {
        vendor: read("board_vendor"),
        product: read("board_name"),
        serial: read("board_serial"),
        version: read("board_version"),
    });
    system
}

/// This machine's kind.
pub fn local_kind(roots: &Roots) -> &'static str {
    #[cfg(target_arch = "x86_64")]
    let hypervisor_bit = raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|info| info.has_hypervisor());
    #[cfg(not(target_arch = "x86_64"))]
    let hypervisor_bit = false;
    Virtualization {
        root: Path::new("/"),
        roots,
        hypervisor_bit,
    }
    .kind()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A recorded server's DMI table (a Supermicro board's values).
    #[test]
    fn a_recorded_dmi_table_fills_the_section() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let dmi = roots.sys.join("class/dmi/id");
        fs::create_dir_all(&dmi).unwrap();
        for (file, value) in [
            ("sys_vendor", "Supermicro"),
            ("product_name", "SYS-1029P-WTR"),
            ("product_uuid", "00000000-0000-0000-0000-ac1f6b000001"),
            ("product_serial", "S123456X8A12345"),
            ("bios_vendor", "American Megatrends Inc."),
            ("bios_date", "10/15/2021"),
            ("bios_version", "3.6"),
            ("chassis_type", "23"),
            ("chassis_vendor", "Supermicro"),
            ("board_vendor", "Supermicro"),
            ("board_name", "X11DDW-NT"),
            ("board_version", "1.10"),
        ] {
            fs::write(dmi.join(file), format!("{value}\n")).unwrap();
        }
        let system = system(&roots, "physical");
        assert_eq!(
            (system.vendor.as_str(), system.product.as_str()),
            ("Supermicro", "SYS-1029P-WTR")
        );
        assert_eq!(system.firmware.unwrap().date, "10/15/2021");
        assert_eq!(system.chassis.unwrap().kind, "Rack Mount Chassis");
        assert_eq!(system.motherboard.unwrap().product, "X11DDW-NT");
        assert_eq!(system.family, "", "a file the table lacks is empty");
    }

    #[test]
    fn without_dmi_only_the_kind_is_known() {
        let root = tempfile::tempdir().unwrap();
        let system = system(&Roots::under(root.path(), "6.1.0"), "virtual-machine");
        assert_eq!(system.kind, "virtual-machine");
        assert!(system.firmware.is_none() && system.chassis.is_none());
    }

    #[test]
    fn containers_then_vms_then_physical() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let kind = |hypervisor_bit| {
            Virtualization {
                root: root.path(),
                roots: &roots,
                hypervisor_bit,
            }
            .kind()
        };
        assert_eq!(kind(false), "physical");
        assert_eq!(kind(true), "virtual-machine");
        fs::create_dir_all(roots.sys.join("class/dmi/id")).unwrap();
        fs::write(roots.sys.join("class/dmi/id/sys_vendor"), "QEMU\n").unwrap();
        assert_eq!(kind(false), "virtual-machine");
        fs::write(root.path().join(".dockerenv"), "").unwrap();
        assert_eq!(kind(true), "container");
    }

    /// This machine, against systemd-detect-virt (the tool Incus runs;
    /// scripts/test installs it: without it the test fails, not passes).
    #[test]
    fn this_machine_is_what_systemd_detect_virt_says() {
        let container = std::process::Command::new("systemd-detect-virt")
            .arg("--container")
            .status()
            .expect("systemd-detect-virt is missing: apt-get install systemd (scripts/test does)");
        let vm = std::process::Command::new("systemd-detect-virt")
            .arg("--vm")
            .status()
            .unwrap();
        let expected = if container.success() {
            "container"
        } else if vm.success() {
            "virtual-machine"
        } else {
            "physical"
        };
        assert_eq!(local_kind(&Roots::local()), expected);
    }
}
