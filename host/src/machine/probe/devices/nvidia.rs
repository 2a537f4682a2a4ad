//! What NVIDIA's own driver says about its cards, by PCI address, as Incus
//! gathers it: `nvidia-container-cli info --csv` first (driver and CUDA
//! versions, model, brand, UUID, architecture), else the driver's
//! /proc/driver/nvidia/gpus/*/information (model and device minor only).
//!
//! The tool is asked only where the driver lists cards in /proc, so a
//! machine without NVIDIA's driver starts no process.

use std::collections::BTreeMap;
use std::path::Path;

use super::sysfs::{self, Roots};
use super::tool;
use crate::api::devices::GpuNvidia;
pub use nodecache_input::tool_output::nvidia::{parse_container_cli, set_device_node};

/// NVIDIA cards by the bus location the driver gives them.
#[derive(Debug, Default)]
pub struct NvidiaCards(BTreeMap<String, GpuNvidia>);

impl NvidiaCards {
    pub fn read(roots: &Roots) -> NvidiaCards {
        let gpus = roots.proc.join("driver/nvidia/gpus");
        if sysfs::sorted_entries(&gpus).is_empty() {
            return NvidiaCards::default();
        }
        let from_tool = roots
            .nvidia_container_cli
            .as_deref()
            .and_then(run_container_cli)
            .map(|csv| parse_container_cli(&csv));
        NvidiaCards(from_tool.unwrap_or_else(|| from_proc(&gpus)))
    }

    /// The card at `pci_address` (`0000:01:00.0`); the tool writes the
    /// domain with eight digits (`00000000:01:00.0`), /proc with four.
    pub fn card(&self, pci_address: &str) -> Option<GpuNvidia> {
        self.0
            .get(pci_address)
            .or_else(|| self.0.get(&format!("0000{pci_address}")))
            .cloned()
    }
}

/// The tool's CSV, or `None` when it is missing or fails (then /proc).
fn run_container_cli(program: &Path) -> Option<String> {
    tool::output(program, &["info", "--csv"], tool::TOOL_LIMIT)
}

/// The driver's own description of each card in /proc.
fn from_proc(gpus: &Path) -> BTreeMap<String, GpuNvidia> {
    sysfs::sorted_entries(gpus)
        .into_iter()
        .filter_map(|address| {
            let text = std::fs::read_to_string(gpus.join(&address).join("information")).ok()?;
            let mut card = GpuNvidia::default();
            for (key, value) in text.lines().filter_map(|line| line.split_once(':')) {
                let value = value.trim();
                match key.trim() {
                    "Model" => {
                        card.model = value.to_string();
                        card.brand = value.split(' ').next().unwrap_or_default().to_string();
                    }
                    "Device Minor" => {
                        set_device_node(&mut card, value);
                    }
                    _ => {}
                }
            }
            Some((address, card))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output in the layout libnvidia-container's `info --csv` prints
    /// (src/cli/info.c), for a two-card host; values modelled on an A100
    /// and a T4, not captured from one.
    const TWO_CARDS: &str = "NVRM version,CUDA version\n\
        535.129.03,12.2\n\
        \n\
        Device Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture\n\
        0,0,NVIDIA A100-PCIE-40GB,Nvidia,GPU-6c9a2b1e-6f3d-4f5e-9c1a-0d2b3c4d5e6f,00000000:17:00.0,8.0\n\
        1,1,Tesla T4,Tesla,GPU-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b,00000000:65:00.0,7.5\n";

    #[test]
    fn the_container_tool_csv_is_read_per_card() {
        let cards = NvidiaCards(parse_container_cli(TWO_CARDS));
        let t4 = cards
            .card("0000:65:00.0")
            .expect("found by its four-digit domain");
        assert_eq!(
            t4,
            GpuNvidia {
                cuda_version: "12.2".into(),
                nvrm_version: "535.129.03".into(),
                brand: "Tesla".into(),
                model: "Tesla T4".into(),
                uuid: "GPU-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b".into(),
                architecture: "7.5".into(),
                card_name: "nvidia1".into(),
                card_device: "195:1".into(),
            }
        );
        assert_eq!(cards.card("0000:17:00.0").unwrap().card_name, "nvidia0");
        assert!(cards.card("0000:18:00.0").is_none());
    }
}
