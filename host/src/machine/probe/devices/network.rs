//! The `network` section: network cards, from the interfaces in
//! /sys/class/net that sit on a device and then the network-class PCI
//! functions without an interface, with their ports (ethtool's view),
//! drivers and SR-IOV virtual functions, as Incus lists them.

use std::path::Path;

use super::cards;
use super::ethtool::{Ethtool, LinkSettings};
use super::ids::IdDatabase;
use super::sysfs::{self, Roots};
use crate::api::devices::{Infiniband, Network, NetworkCard, NetworkPort, NetworkVdpa, Sriov};

/// Link modes by their `ETHTOOL_LINK_MODE_*` bit, as Incus names them.
const MODES: &[(u32, &str)] = &[
    (0, "10baseT/Half"),
    (1, "10baseT/Full"),
    (2, "100baseT/Half"),
    (3, "100baseT/Full"),
    (4, "1000baseT/Half"),
    (5, "1000baseT/Full"),
    (12, "10000baseT/Full"),
    (15, "2500baseX/Full"),
    (17, "1000baseKX/Full"),
    (18, "10000baseKX4/Full"),
    (19, "10000baseKR/Full"),
    (21, "20000baseMLD2/Full"),
    (22, "20000baseKR2/Full"),
    (23, "40000baseKR4/Full"),
    (24, "40000baseCR4/Full"),
    (25, "40000baseSR4/Full"),
    (26, "40000baseLR4/Full"),
    (27, "56000baseKR4/Full"),
    (28, "56000baseCR4/Full"),
    (29, "56000baseSR4/Full"),
    (30, "56000baseLR4/Full"),
    (31, "25000baseCR/Full"),
    (32, "25000baseKR/Full"),
    (33, "25000baseSR/Full"),
    (34, "50000baseCR2/Full"),
    (35, "50000baseKR2/Full"),
    (36, "100000baseKR4/Full"),
    (37, "100000baseSR4/Full"),
    (38, "100000baseCR4/Full"),
    (39, "100000baseLR4_ER4/Full"),
    (40, "50000baseSR2/Full"),
    (41, "1000baseX/Full"),
    (42, "10000baseCR/Full"),
    (43, "10000baseSR/Full"),
    (44, "10000baseLR/Full"),
    (45, "10000baseLRM/Full"),
    (46, "10000baseER/Full"),
    (47, "2500baseT/Full"),
    (48, "5000baseT/Full"),
];

/// Port kinds a card supports, by the same bits.
const PORTS: &[(u32, &str)] = &[
    (7, "twisted pair"),
    (8, "AUI"),
    (9, "media-independent"),
    (10, "fibre"),
    (11, "BNC"),
    (16, "backplane"),
];

/// Where a card's facts come from: sysfs, pci.ids, and ethtool (absent
/// when no socket could be opened: then ports carry sysfs facts only).
struct Sources<'a> {
    roots: &'a Roots,
    names: &'a IdDatabase,
    ethtool: Option<Ethtool>,
}

pub fn network(roots: &Roots, names: &IdDatabase) -> Network {
    let sources = Sources {
        roots,
        names,
        ethtool: Ethtool::open().ok(),
    };
    let class = roots.sys.join("class/net");
    // Bridges, bonds, veths, loopback: no `device`, no hardware.
    let devices = sysfs::sorted_entries(&class)
        .into_iter()
        .map(|name| class.join(name).join("device"))
        .filter(|device| device.exists());
    let (cards, total) = cards::walk(roots, devices, "0x02", |device, pci_address| {
        card(device, pci_address, &sources)
    });
    Network { cards, total }
}

impl cards::Card for NetworkCard {
    fn pci_address(&self) -> &str {
        &self.pci_address
    }
    fn sriov(&mut self) -> Option<&mut Sriov<NetworkCard>> {
        self.sriov.as_mut()
    }
}

fn card(device: &Path, pci_address: String, sources: &Sources) -> NetworkCard {
    let dir = sysfs::device_dir(device);
    let vendor_id = sysfs::id(&dir.join("vendor"));
    let product_id = sysfs::id(&dir.join("device"));
    let (vendor, product) = sources.names.device(&vendor_id, &product_id);
    let (driver, driver_version) = sysfs::driver(&dir, &sources.roots.kernel_release).unwrap_or_default();
    let mut card = NetworkCard {
        driver,
        driver_version,
        sriov: cards::sriov(&dir),
        numa_node: sysfs::numa_node(&dir),
        pci_address,
        vendor,
        vendor_id,
        product,
        product_id,
        usb_address: sysfs::usb_address(&dir).unwrap_or_default(),
        vdpa: vdpa(&dir),
        ..NetworkCard::default()
    };
    let is_function = device.join("physfn").exists();
    let net = device.join("net");
    for name in sysfs::sorted_entries(&net) {
        if let Some(port) = port(&net.join(&name), name, is_function, &dir, sources) {
            card.ports.push(port);
        }
    }
    if let (Some(first), Some(ethtool)) = (card.ports.first(), &sources.ethtool) {
        card.firmware_version = ethtool.firmware_version(&first.id).unwrap_or_default();
    }
    card
}

/// The card's first vDPA device (`vdpaN` under it) and its `vhost-vdpa-N`
/// node. Incus fails the whole card when the node is missing; here only
/// the vDPA entry is left out.
fn vdpa(card: &Path) -> Option<NetworkVdpa> {
    let name = sysfs::sorted_entries(card)
        .into_iter()
        .find(|name| name.starts_with("vdpa"))?;
    let device = sysfs::sorted_entries(&card.join(&name))
        .into_iter()
        .find(|entry| entry.starts_with("vhost-vdpa-"))?;
    Some(NetworkVdpa { name, device })
}

/// The character devices of InfiniBand port `port` (1-based, as the
/// kernel numbers IB ports) of the card at `card`: its `issmN` and `umadN`
/// under `infiniband_mad` (each says which port it serves) and the card's
/// one `uverbsN` under `infiniband_verbs`.
fn infiniband(card: &Path, port: u64) -> Infiniband {
    let mut found = Infiniband::default();
    let mad = card.join("infiniband_mad");
    for name in sysfs::sorted_entries(&mad) {
        if sysfs::read_u64(&mad.join(&name).join("port")) != Some(port) {
            continue;
        }
        let Some(device) = sysfs::read_trimmed(&mad.join(&name).join("dev")) else {
            continue;
        };
        if name.starts_with("issm") {
            (found.issm_name, found.issm_device) = (name, device);
        } else if name.starts_with("umad") {
            (found.mad_name, found.mad_device) = (name, device);
        }
    }
    let verbs = card.join("infiniband_verbs");
    if let [name] = sysfs::sorted_entries(&verbs).as_slice() {
        found.verb_device = sysfs::read_trimmed(&verbs.join(name).join("dev")).unwrap_or_default();
        found.verb_name = name.clone();
    }
    found
}

/// One interface of the card; `None` where the kernel will not say whether
/// its link is up (as Incus leaves such a port out).
fn port(
    interface: &Path,
    name: String,
    is_function: bool,
    card: &Path,
    sources: &Sources,
) -> Option<NetworkPort> {
    let protocol = match sysfs::read_u64(&interface.join("type")) {
        Some(1) => "ethernet",
        Some(19) => "ATM",
        Some(32) => "infiniband",
        Some(_) => "unknown",
        None => "",
    };
    let mut port = NetworkPort {
        address: sysfs::read_trimmed(&interface.join("address")).unwrap_or_default(),
        port: sysfs::read_u64(&interface.join("dev_port")).unwrap_or(0),
        protocol: protocol.to_string(),
        id: name,
        ..NetworkPort::default()
    };
    if protocol == "infiniband" && card.join("infiniband").exists() {
        port.infiniband = Some(infiniband(card, port.port + 1));
    }
    // A virtual function's link is its parent's business.
    if is_function {
        return Some(port);
    }
    let Some(ethtool) = &sources.ethtool else {
        return Some(port);
    };
    if let Some(address) = ethtool.permanent_address(&port.id) {
        port.address = address;
    }
    port.link_detected = ethtool.link_detected(&port.id).ok()?;
    if let Some(settings) = ethtool.link_settings(&port.id).ok()? {
        apply(&settings, &mut port);
    }
    Some(port)
}

/// Link settings into the port's fields, in Incus's words.
fn apply(settings: &LinkSettings, port: &mut NetworkPort) {
    port.auto_negotiation = settings.autoneg;
    if port.link_detected {
        port.link_duplex = match settings.duplex {
            0 => "half",
            1 => "full",
            _ => "",
        }
        .to_string();
        port.link_speed = settings.speed.unwrap_or(0);
    }
    port.transceiver_type = match settings.transceiver {
        0 => "internal",
        1 => "external",
        _ => "",
    }
    .to_string();
    port.port_type = match settings.port {
        0x00 => "twisted pair",
        0x01 => "AUI",
        0x02 => "media-independent",
        0x03 => "fibre",
        0x04 => "BNC",
        0x05 => "direct attach",
        0xef => "none",
        0xff => "other",
        _ => "",
    }
    .to_string();
    let has = |bit: u32| {
        settings
            .supported
            .get((bit / 32) as usize)
            .is_some_and(|word| word & (1 << (bit % 32)) != 0)
    };
    port.supported_modes = MODES
        .iter()
        .filter(|(bit, _)| has(*bit))
        .map(|(_, name)| name.to_string())
        .collect();
    port.supported_ports = PORTS
        .iter()
        .filter(|(bit, _)| has(*bit))
        .map(|(_, name)| name.to_string())
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// Settings as an Intel X710 port reports them: 10G fibre, link up.
    #[test]
    fn link_settings_read_as_incus_reads_them() {
        let settings = LinkSettings {
            autoneg: false,
            duplex: 1,
            speed: Some(10_000),
            port: 0x03,
            transceiver: 0,
            supported: vec![(1 << 10) | (1 << 12), 1 << (43 - 32)],
        };
        let mut port = NetworkPort {
            link_detected: true,
            ..NetworkPort::default()
        };
        apply(&settings, &mut port);
        assert_eq!(
            (
                port.port_type.as_str(),
                port.link_speed,
                port.link_duplex.as_str()
            ),
            ("fibre", 10_000, "full")
        );
        assert_eq!(port.supported_modes, ["10000baseT/Full", "10000baseSR/Full"]);
        assert_eq!(port.supported_ports, ["fibre"]);
        let mut down = NetworkPort::default();
        apply(&settings, &mut down);
        assert_eq!(
            (down.link_speed, down.link_duplex.as_str()),
            (0, ""),
            "no speed without a link"
        );
    }

    /// A recorded two-port card with SR-IOV (one VF in use), read without
    /// ethtool: card facts from sysfs, the VF under its parent, the total
    /// counting it.
    #[test]
    fn a_recorded_sriov_card_and_its_virtual_function() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let sys = &roots.sys;
        let pci = sys.join("devices/pci0000:00");
        fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        fs::create_dir_all(sys.join("class/net")).unwrap();
        let function = |address: &str, product: &str| {
            let dir = pci.join(address);
            fs::create_dir_all(dir.join("net")).unwrap();
            symlink(sys.join("bus/pci"), dir.join("subsystem")).unwrap();
            fs::write(dir.join("vendor"), "0x8086\n").unwrap();
            fs::write(dir.join("device"), format!("0x{product}\n")).unwrap();
            fs::write(dir.join("class"), "0x020000\n").unwrap();
            symlink(&dir, sys.join("bus/pci/devices").join(address)).unwrap();
            dir
        };
        let interface = |device: &Path, name: &str, port: u64| {
            let dir = device.join("net").join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("type"), "1\n").unwrap();
            fs::write(dir.join("address"), format!("3c:fd:fe:00:00:0{port}\n")).unwrap();
            fs::write(dir.join("dev_port"), format!("{port}\n")).unwrap();
            symlink(device, dir.join("device")).unwrap();
            symlink(&dir, sys.join("class/net").join(name)).unwrap();
        };
        let pf = function("0000:3b:00.0", "1572");
        fs::write(pf.join("sriov_numvfs"), "1\n").unwrap();
        fs::write(pf.join("sriov_totalvfs"), "64\n").unwrap();
        interface(&pf, "enp59s0f0", 0);
        interface(&pf, "enp59s0f1", 1);
        let vf = function("0000:3b:02.0", "154c");
        symlink(&pf, vf.join("physfn")).unwrap();
        interface(&vf, "enp59s0f0v0", 0);

        let sources = Sources {
            roots: &roots,
            names: &IdDatabase::from_text(""),
            ethtool: None,
        };
        let card = card(&pf.clone(), "0000:3b:00.0".into(), &sources);
        let ports: Vec<(&str, u64)> = card.ports.iter().map(|p| (p.id.as_str(), p.port)).collect();
        assert_eq!(ports, [("enp59s0f0", 0), ("enp59s0f1", 1)]);
        assert_eq!(card.ports[1].address, "3c:fd:fe:00:00:01");
        let section = network(&roots, &IdDatabase::from_text(""));
        assert_eq!(section.total, 2, "one card and its VF");
        assert_eq!(section.cards.len(), 1);
        let sriov = section.cards[0].sriov.as_ref().unwrap();
        assert_eq!((sriov.current_vfs, sriov.maximum_vfs), (1, 64));
        let vfs = sriov.vfs.as_ref().unwrap();
        assert_eq!(
            (vfs[0].pci_address.as_str(), vfs[0].product_id.as_str()),
            ("0000:3b:02.0", "154c")
        );
    }

    /// A recorded ConnectX-class two-port InfiniBand card (mlx5, as
    /// /sys shows one: `infiniband/mlx5_0`, one `umadN`/`issmN` pair per
    /// port, one `uverbs0`) with a vDPA device: each port gets its own
    /// port's devices, both the card's verbs device.
    #[test]
    fn a_recorded_infiniband_card_with_vdpa() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let card = root.path().join("sys/devices/pci0000:00/0000:81:00.0");
        let write = |relative: &str, text: &str| {
            let path = card.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        fs::create_dir_all(card.join("infiniband/mlx5_0")).unwrap();
        for (index, port) in [(0, 1), (1, 2)] {
            write(&format!("infiniband_mad/umad{index}/port"), &format!("{port}\n"));
            write(
                &format!("infiniband_mad/umad{index}/dev"),
                &format!("231:{index}\n"),
            );
            write(&format!("infiniband_mad/issm{index}/port"), &format!("{port}\n"));
            write(
                &format!("infiniband_mad/issm{index}/dev"),
                &format!("231:{}\n", 64 + index),
            );
            write(&format!("net/ib{index}/type"), "32\n");
            write(&format!("net/ib{index}/dev_port"), &format!("{index}\n"));
        }
        write("infiniband_verbs/uverbs0/dev", "231:192\n");
        write("vdpa0/vhost-vdpa-0/dev", "509:0\n");
        let sources = Sources {
            roots: &roots,
            names: &IdDatabase::from_text(""),
            ethtool: None,
        };
        let card = super::card(&card, String::new(), &sources);
        let ports: Vec<_> = card
            .ports
            .iter()
            .map(|p| (p.id.as_str(), p.protocol.as_str(), p.infiniband.clone().unwrap()))
            .collect();
        let expected = |index: u64| Infiniband {
            issm_name: format!("issm{index}"),
            issm_device: format!("231:{}", 64 + index),
            mad_name: format!("umad{index}"),
            mad_device: format!("231:{index}"),
            verb_name: "uverbs0".into(),
            verb_device: "231:192".into(),
        };
        assert_eq!(
            ports,
            [
                ("ib0", "infiniband", expected(0)),
                ("ib1", "infiniband", expected(1))
            ]
        );
        assert_eq!(
            card.vdpa,
            Some(NetworkVdpa {
                name: "vdpa0".into(),
                device: "vhost-vdpa-0".into()
            })
        );
        let json = serde_json::to_value(&card).unwrap();
        assert_eq!(json["ports"][1]["infiniband"]["issm_name"], "issm1");
        assert_eq!(json["vdpa"]["device"], "vhost-vdpa-0");
    }

    /// An Ethernet port carries no `infiniband` key, a card no `vdpa`
    /// without a `vhost-vdpa-N` node (as Incus omits them).
    #[test]
    fn ethernet_ports_and_incomplete_vdpa_leave_the_keys_out() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let card = root.path().join("card");
        fs::create_dir_all(card.join("net/eth0")).unwrap();
        fs::create_dir_all(card.join("vdpa0")).unwrap();
        fs::create_dir_all(card.join("infiniband_verbs/uverbs0")).unwrap();
        fs::write(card.join("net/eth0/type"), "1\n").unwrap();
        let sources = Sources {
            roots: &roots,
            names: &IdDatabase::from_text(""),
            ethtool: None,
        };
        let json = serde_json::to_value(super::card(&card, String::new(), &sources)).unwrap();
        assert!(json.get("vdpa").is_none(), "{json}");
        assert!(json["ports"][0].get("infiniband").is_none(), "{json}");
    }
}
