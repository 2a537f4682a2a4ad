//! Proxmox VE's custom CPU models. Its format, as its manual page
//! `cpu-models.conf(5)` gives it (Proxmox VE 8): a section per model
//! headed `cpu-model: NAME`, options indented by a tab or several spaces,
//! option and value separated by one space, `#` lines ignored; `flags` is
//! `+FLAG;-FLAG…` in QEMU's names, `phys-bits` 8 to 64, `reported-model` a
//! model QEMU defines. A VM names the model `custom-NAME`.

use crate::outputs::GuestCpu;

/// Proxmox's custom model names: what its section header and a VM's
/// `cpu: custom-NAME` take.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let shaped = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "--model-name {}: 1-40 of A-Z a-z 0-9 - _ . starting with a letter or digit",
            crate::format::for_terminal(&format!("{name:?}"), 64)
        ))
    }
}

/// A `cpu-models.conf` section: the baseline as `reported-model`, the
/// common features it lacks added, its own features some node cannot give
/// removed, and the fewest physical address bits of the nodes (omitted
/// when no node says, leaving Proxmox's default).
pub fn proxmox_section(cpu: &GuestCpu, name: &str, physical_bits: Option<u32>) -> String {
    let flags: Vec<String> = cpu
        .qemu_features
        .iter()
        .map(|flag| format!("+{flag}"))
        .chain(cpu.qemu_disabled.iter().map(|flag| format!("-{flag}")))
        .collect();
    let mut text = format!(
        "# nodecache: append to /etc/pve/virtual-guest/cpu-models.conf on any node; a VM uses it as `qm set VMID --cpu custom-{name}`\n\
         cpu-model: {name}\n"
    );
    if !flags.is_empty() {
        text.push_str(&format!("\tflags {}\n", flags.join(";")));
    }
    if let Some(bits) = physical_bits {
        text.push_str(&format!("\tphys-bits {bits}\n"));
    }
    let reported = super::unversioned(&cpu.baseline);
    text.push_str(&format!("\treported-model {reported}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_what_a_section_header_takes() {
        assert!(check_model_name("nodecache-rack_1.a").is_ok());
        for bad in ["", "-x", "a b", "a:b", &"x".repeat(41)] {
            assert!(check_model_name(bad).is_err(), "{bad:?}");
        }
    }
}
