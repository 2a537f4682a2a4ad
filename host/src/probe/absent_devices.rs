//! The `gpu` section where the machine has no GPU.
//!
//! nodecache does not read GPUs yet. Where the machine has none (no
//! display-class PCI device, no DRM card, no NVIDIA device: most servers'
//! VMs), the section is what Incus writes, empty; where it has some, the
//! section is left out of the document rather than written wrong, and an
//! Incus client shows it as missing.

use serde_json::{Value, json};

use super::sysfs::{self, Roots};

/// `{"cards": [], "total": 0}` when there is no GPU to describe.
pub fn gpu(roots: &Roots) -> Option<Value> {
    let pci = roots.sys.join("bus/pci/devices");
    let display = sysfs::sorted_entries(&pci).iter().any(|device| {
        sysfs::read_trimmed(&pci.join(device).join("class")).is_some_and(|class| class.starts_with("0x03"))
    });
    let drm = sysfs::sorted_entries(&roots.sys.join("class/drm"))
        .iter()
        .any(|name| name.starts_with("card"));
    (!display && !drm && !roots.dev.join("nvidiactl").exists()).then(|| json!({"cards": [], "total": 0}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_machine_with_a_gpu_gets_no_section_rather_than_a_wrong_one() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        assert_eq!(gpu(&roots), Some(json!({"cards": [], "total": 0})));
        let vga = roots.sys.join("bus/pci/devices/0000:00:02.0");
        fs::create_dir_all(&vga).unwrap();
        fs::write(vga.join("class"), "0x030000\n").unwrap();
        assert_eq!(gpu(&roots), None);
    }
}
