//! The device sections of Incus's `api.Resources` that nodecache probes
//! itself: `gpu`, `pci`, `network`, `storage`, `usb` and `system`, with Incus's JSON field names and
//! its choice of which empty fields are left out (Go's `omitempty`), so the
//! documents compare leaf for leaf.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pci {
    pub devices: Vec<PciDevice>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PciDevice {
    pub driver: String,
    pub driver_version: String,
    pub numa_node: u64,
    pub pci_address: String,
    pub vendor: String,
    pub vendor_id: String,
    pub product: String,
    pub product_id: String,
    pub iommu_group: u64,
    pub vpd: PciVpd,
}

/// Vital product data; `{}` where the device has none or it is unreadable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PciVpd {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub cards: Vec<GpuCard>,
    /// Cards and their virtual functions.
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuCard {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drm: Option<GpuDrm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Sriov<GpuCard>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvidia: Option<GpuNvidia>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mdev: BTreeMap<String, GpuMdev>,
    pub numa_node: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDrm {
    pub id: u64,
    pub card_name: String,
    pub card_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub control_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub control_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub render_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub render_device: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuNvidia {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cuda_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nvrm_version: String,
    pub brand: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    pub card_name: String,
    pub card_device: String,
}

/// A mediated-device profile of a GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuMdev {
    pub api: String,
    pub available: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub devices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub cards: Vec<NetworkCard>,
    /// Cards and their virtual functions.
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkCard {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Sriov<NetworkCard>>,
    pub numa_node: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub firmware_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdpa: Option<NetworkVdpa>,
}

/// A card's vDPA device (virtio datapath acceleration) and its vhost-vdpa
/// character device, which a guest's virtio-net can sit on directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkVdpa {
    pub name: String,
    pub device: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkPort {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub port: u64,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_modes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transceiver_type: String,
    pub auto_negotiation: bool,
    pub link_detected: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub link_speed: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_duplex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infiniband: Option<Infiniband>,
}

/// An InfiniBand port's character devices (name and `major:minor`): the
/// subnet-manager and management-datagram ones of this port, and the
/// card's verbs device, which a container needs passed in to use the port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Infiniband {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issm_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issm_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mad_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mad_device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verb_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verb_device: String,
}

/// SR-IOV of a network card or GPU: how many virtual functions it has and
/// may have, and them (each a card of the same kind).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sriov<Card> {
    pub current_vfs: u64,
    pub maximum_vfs: u64,
    /// `null` when there are none, as Incus writes it.
    pub vfs: Option<Vec<Card>>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usb {
    pub devices: Vec<UsbDevice>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsbDevice {
    pub bus_address: u64,
    pub device_address: u64,
    pub serial: String,
    /// `null` for a device without interfaces, as Incus writes it.
    pub interfaces: Option<Vec<UsbInterface>>,
    pub vendor: String,
    pub vendor_id: String,
    pub product: String,
    pub product_id: String,
    /// Mbit/s; written as Go writes a float (`480`, `1.5`).
    #[serde(serialize_with = "go_float")]
    pub speed: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsbInterface {
    pub class: String,
    pub class_id: u64,
    pub driver: String,
    pub driver_version: String,
    pub number: u64,
    pub subclass: String,
    pub subclass_id: u64,
}

/// A float as Go's encoding/json writes it: whole numbers without `.0`.
fn go_float<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub disks: Vec<Disk>,
    /// Disks and their partitions.
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub id: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "type")]
    pub kind: String,
    pub read_only: bool,
    pub size: u64,
    pub removable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wwn: String,
    pub numa_node: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_path: String,
    pub block_size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub firmware_version: String,
    pub rpm: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    pub device_id: String,
    pub partitions: Vec<Partition>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub usb_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub id: String,
    pub device: String,
    pub read_only: bool,
    pub size: u64,
    pub partition: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub uuid: String,
    pub vendor: String,
    pub product: String,
    pub family: String,
    pub version: String,
    pub sku: String,
    pub serial: String,
    /// `physical`, `virtual-machine`, `container` or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `null` where the machine publishes no DMI table, as in Incus.
    pub firmware: Option<Firmware>,
    pub chassis: Option<Chassis>,
    pub motherboard: Option<Motherboard>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    pub vendor: String,
    pub date: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chassis {
    pub vendor: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub serial: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Motherboard {
    pub vendor: String,
    pub product: String,
    pub serial: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields Incus leaves out when empty are left out; the rest stay.
    #[test]
    fn empty_fields_are_written_as_incus_writes_them() {
        let disk = serde_json::to_value(Disk::default()).unwrap();
        for absent in ["model", "type", "wwn", "device_path", "serial", "pci_address"] {
            assert!(disk.get(absent).is_none(), "{absent}");
        }
        for present in ["id", "device", "block_size", "rpm", "device_id", "partitions"] {
            assert!(disk.get(present).is_some(), "{present}");
        }
        assert_eq!(serde_json::to_string(&PciVpd::default()).unwrap(), "{}");
        let usb = UsbDevice {
            speed: 480.0,
            ..UsbDevice::default()
        };
        assert_eq!(
            serde_json::to_value(&usb).unwrap()["speed"],
            serde_json::json!(480)
        );
        let slow = UsbDevice { speed: 1.5, ..usb };
        assert_eq!(
            serde_json::to_value(&slow).unwrap()["speed"],
            serde_json::json!(1.5)
        );
        assert!(serde_json::to_value(&slow).unwrap()["interfaces"].is_null());
        let system = serde_json::to_value(System::default()).unwrap();
        assert!(system["firmware"].is_null() && system.get("type").is_some());
    }
}
