//! The `usb` section: every USB device but hubs, with its interfaces and
//! their drivers, and names from the usb.ids database where the device
//! does not give its own, as Incus lists them.

use std::path::Path;

use super::ids::IdDatabase;
use super::sysfs::{self, Roots};
use crate::api::devices::{Usb, UsbDevice, UsbInterface};

/// USB's hub class: hubs are plumbing, not devices to pass through.
const HUB_CLASS: u64 = 9;

pub fn usb(roots: &Roots) -> Usb {
    let names = IdDatabase::usb();
    let bus = roots.sys.join("bus/usb/devices");
    let devices: Vec<UsbDevice> = sysfs::sorted_entries(&bus)
        .into_iter()
        .filter_map(|name| device(&bus.join(&name), &name, roots, &names))
        .collect();
    Usb {
        total: devices.len() as u64,
        devices,
    }
}

fn hex(path: &Path) -> Option<u64> {
    u64::from_str_radix(&sysfs::read_trimmed(path)?, 16).ok()
}

fn device(path: &Path, name: &str, roots: &Roots, names: &IdDatabase) -> Option<UsbDevice> {
    let bus_address = sysfs::read_u64(&path.join("busnum"))?;
    if hex(&path.join("bDeviceClass")) == Some(HUB_CLASS) {
        return None;
    }
    let vendor_id = sysfs::id(&path.join("idVendor"));
    let product_id = sysfs::id(&path.join("idProduct"));
    let (vendor, listed_product) = names.device(&vendor_id, &product_id);
    let product = sysfs::read_trimmed(&path.join("product")).unwrap_or(listed_product);
    let interfaces: Vec<UsbInterface> = sysfs::sorted_entries(path)
        .into_iter()
        .filter(|entry| entry.starts_with(name) && path.join(entry).is_dir())
        .map(|entry| interface(&path.join(entry), roots, names))
        .collect();
    Some(UsbDevice {
        bus_address,
        device_address: sysfs::read_u64(&path.join("devnum")).unwrap_or(0),
        serial: sysfs::read_trimmed(&path.join("iSerial")).unwrap_or_default(),
        interfaces: (!interfaces.is_empty()).then_some(interfaces),
        vendor,
        vendor_id,
        product,
        product_id,
        speed: sysfs::read_trimmed(&path.join("speed"))
            .and_then(|speed| speed.parse().ok())
            .unwrap_or(0.0),
    })
}

fn interface(path: &Path, roots: &Roots, names: &IdDatabase) -> UsbInterface {
    let class_id = hex(&path.join("bInterfaceClass")).unwrap_or(0);
    let subclass_id = hex(&path.join("bInterfaceSubClass")).unwrap_or(0);
    let (class, subclass) = names.class(class_id, subclass_id);
    let (driver, driver_version) = sysfs::driver(path, &roots.kernel_release).unwrap_or_default();
    UsbInterface {
        class,
        class_id,
        driver,
        driver_version,
        number: hex(&path.join("bInterfaceNumber")).unwrap_or(0),
        subclass: if subclass_id > 0 { subclass } else { String::new() },
        subclass_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const IDS: &str = "0557  ATEN International Co., Ltd\n\t2221  Winbond Hermon\n\t2419  Virtual mouse/keyboard device\n1d6b  Linux Foundation\n\t0002  2.0 root hub\nC 03  Human Interface Device\n\t01  Boot Interface Subclass\n\t\t01  Keyboard\nC 09  Hub\n";

    #[test]
    fn names_come_from_usb_ids() {
        let names = IdDatabase::from_text(IDS);
        assert_eq!(names.device("0557", "2419").1, "Virtual mouse/keyboard device");
        assert_eq!(
            names.device("0557", "ffff"),
            ("ATEN International Co., Ltd".into(), String::new())
        );
        assert_eq!(
            names.class(3, 1),
            ("Human Interface Device".into(), "Boot Interface Subclass".into())
        );
        assert_eq!(names.class(0xfe, 0), Default::default());
    }

    /// A recorded KVM switch's keyboard (two HID interfaces) beside the
    /// root hub it hangs from, which is left out.
    #[test]
    fn a_recorded_keyboard_and_its_hub() {
        let root = tempfile::tempdir().unwrap();
        let roots = Roots::under(root.path(), "6.1.0");
        let bus = roots.sys.join("bus/usb/devices");
        let write = |dir: &Path, files: &[(&str, &str)]| {
            fs::create_dir_all(dir).unwrap();
            for (file, value) in files {
                fs::write(dir.join(file), format!("{value}\n")).unwrap();
            }
        };
        let hub = bus.join("usb1");
        write(
            &hub,
            &[
                ("busnum", "1"),
                ("devnum", "1"),
                ("bDeviceClass", "09"),
                ("idVendor", "1d6b"),
            ],
        );
        let keyboard = bus.join("1-1");
        write(
            &keyboard,
            &[
                ("busnum", "1"),
                ("devnum", "3"),
                ("bDeviceClass", "00"),
                ("idVendor", "0557"),
                ("idProduct", "2419"),
                ("speed", "1.5"),
            ],
        );
        let drivers = roots.sys.join("bus/usb/drivers/usbhid");
        fs::create_dir_all(&drivers).unwrap();
        for (entry, number, subclass) in [("1-1:1.0", "00", "01"), ("1-1:1.1", "01", "00")] {
            let interface = keyboard.join(entry);
            write(
                &interface,
                &[
                    ("bInterfaceClass", "03"),
                    ("bInterfaceSubClass", subclass),
                    ("bInterfaceNumber", number),
                ],
            );
            symlink(&drivers, interface.join("driver")).unwrap();
        }
        let names = IdDatabase::from_text(IDS);
        assert!(
            device(&hub, "usb1", &roots, &names).is_none(),
            "a hub is not listed"
        );
        let keyboard = device(&keyboard, "1-1", &roots, &names).unwrap();
        assert_eq!((keyboard.bus_address, keyboard.device_address), (1, 3));
        assert_eq!(
            keyboard.product, "Virtual mouse/keyboard device",
            "from usb.ids: no product file"
        );
        assert_eq!(keyboard.speed, 1.5);
        let interfaces = keyboard.interfaces.unwrap();
        assert_eq!(interfaces.len(), 2);
        assert_eq!(
            (
                interfaces[0].class.as_str(),
                interfaces[0].subclass.as_str(),
                interfaces[0].driver.as_str()
            ),
            ("Human Interface Device", "Boot Interface Subclass", "usbhid")
        );
        assert_eq!((interfaces[1].number, interfaces[1].subclass.as_str()), (1, ""));
        assert_eq!(
            interfaces[1].driver_version, "6.1.0",
            "a built-in driver: the kernel's release"
        );
    }
}
