//! `nvidia-container-cli info --csv` into Incus's per-card NVIDIA fields
//! (the host runs the tool and reads /proc: `probe::devices::nvidia`).

use std::collections::BTreeMap;

use crate::api::devices::GpuNvidia;

/// `nvidia-container-cli info --csv`: a header and the driver's
/// `NVRM version,CUDA version`, a blank line, then a header and one
/// `index,minor,model,brand,uuid,bus location,architecture` row per card.
pub fn parse_container_cli(csv: &str) -> BTreeMap<String, GpuNvidia> {
    // Rows counted without blank lines, as Go's CSV reader (Incus) counts them.
    let mut rows = csv.lines().filter(|line| !line.trim().is_empty());
    let _header = rows.next();
    let versions: Vec<&str> = rows.next().unwrap_or_default().split(',').collect();
    let (nvrm_version, cuda_version) = match versions.as_slice() {
        [nvrm, cuda, ..] => (nvrm.to_string(), cuda.to_string()),
        _ => Default::default(),
    };
    let _device_header = rows.next();
    rows.filter_map(|row| {
        let fields: Vec<&str> = row.split(',').collect();
        let [_index, minor, model, brand, uuid, bus, architecture, ..] = fields.as_slice() else {
            return None;
        };
        let mut card = GpuNvidia {
            cuda_version: cuda_version.clone(),
            nvrm_version: nvrm_version.clone(),
            brand: brand.to_string(),
            model: model.to_string(),
            uuid: uuid.to_string(),
            architecture: architecture.to_string(),
            ..GpuNvidia::default()
        };
        set_device_node(&mut card, minor);
        Some((bus.to_string(), card))
    })
    .collect()
}

/// The card's device node, `/dev/nvidiaN` (character major 195).
pub fn set_device_node(card: &mut GpuNvidia, minor: &str) {
    card.card_name = format!("nvidia{minor}");
    card.card_device = format!("195:{minor}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_empty_tool_output_gives_no_cards_and_no_panic() {
        for text in ["", "NVRM version,CUDA version\n", "a\nb\nc\n1,2,3\n"] {
            assert!(parse_container_cli(text).is_empty(), "{text:?}");
        }
    }
}
