//! `lshw -json`'s tree into Incus's `system` section, field for field as
//! Incus maps it (the host runs the tool: `probe::devices::lshw`).

use serde::Deserialize;

use crate::api::devices::{Chassis, Firmware, Motherboard, System};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Node {
    id: String,
    description: String,
    product: String,
    vendor: String,
    serial: String,
    version: String,
    date: String,
    configuration: Configuration,
    children: Vec<Node>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Configuration {
    chassis: String,
    family: String,
    sku: String,
    uuid: String,
}

/// lshw's JSON tree into the section, field for field as Incus maps it.
pub fn parse(json: &str) -> Result<System, serde_json::Error> {
    let machine: Node = serde_json::from_str(json)?;
    let mut system = System {
        uuid: machine.configuration.uuid,
        vendor: machine.vendor,
        product: machine.product,
        family: machine.configuration.family,
        version: machine.version,
        sku: machine.configuration.sku,
        serial: machine.serial,
        chassis: Some(Chassis {
            kind: machine.configuration.chassis,
            ..Chassis::default()
        }),
        ..System::default()
    };
    if let Some(board) = machine
        .children
        .into_iter()
        .find(|c| c.description == "Motherboard")
    {
        system.firmware = board
            .children
            .iter()
            .find(|c| c.id == "firmware")
            .map(|firmware| Firmware {
                vendor: firmware.vendor.clone(),
                date: firmware.date.clone(),
                version: firmware.version.clone(),
            });
        system.motherboard = Some(Motherboard {
            vendor: board.vendor,
            product: board.product,
            serial: board.serial,
            version: board.version,
        });
    }
    Ok(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `lshw -json` prints for an Arm server without DMI in
    /// /sys (values modelled on an Ampere Altra board, not captured).
    const ARM_SERVER: &str = r#"{
      "id": "altra", "class": "system", "description": "Computer",
      "product": "Mt.Collins", "vendor": "Ampere Computing", "serial": "4KY1234",
      "version": "1.0", "width": 64,
      "configuration": {"chassis": "rackmount", "family": "Altra", "sku": "AC-M128", "uuid": "0d2a5f3e-1111-2222-3333-444455556666"},
      "capabilities": {"smp": "Symmetric Multi-Processing"},
      "children": [
        {"id": "core", "class": "bus", "description": "Motherboard", "product": "Mt.Collins MB",
         "vendor": "Ampere Computing", "serial": "MB0042", "version": "A1",
         "children": [
           {"id": "memory", "class": "memory", "size": 274877906944},
           {"id": "firmware", "class": "memory", "description": "BIOS", "vendor": "Ampere",
            "version": "2.10.20230517", "date": "05/17/2023"}
         ]}
      ]
    }"#;

    #[test]
    fn an_lshw_tree_fills_the_section_as_incus_maps_it() {
        let system = parse(ARM_SERVER).unwrap();
        assert_eq!(
            (
                system.vendor.as_str(),
                system.product.as_str(),
                system.sku.as_str()
            ),
            ("Ampere Computing", "Mt.Collins", "AC-M128")
        );
        assert_eq!(system.uuid, "0d2a5f3e-1111-2222-3333-444455556666");
        assert_eq!(system.chassis.unwrap().kind, "rackmount");
        let firmware = system.firmware.unwrap();
        assert_eq!(
            (firmware.vendor.as_str(), firmware.date.as_str()),
            ("Ampere", "05/17/2023")
        );
        assert_eq!(system.motherboard.unwrap().serial, "MB0042");
    }

    /// A VM lshw knows little of: a chassis with an empty type, an empty
    /// motherboard and no firmware (what Incus writes on such a machine).
    #[test]
    fn a_bare_vm_keeps_empty_fields() {
        let system = parse(r#"{"id":"vm","class":"system","children":[{"id":"core","description":"Motherboard","children":[{"id":"cpu"}]}]}"#).unwrap();
        assert_eq!(system.chassis, Some(Chassis::default()));
        assert_eq!(system.motherboard, Some(Motherboard::default()));
        assert_eq!(system.firmware, None);
        assert!(parse("not json").is_err());
    }
}
