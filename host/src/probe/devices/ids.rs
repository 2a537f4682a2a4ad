//! The hardware id databases (pci.ids, usb.ids): names for vendor, device
//! and class ids, where the distribution installs them. Both files share one
//! format: a top-level line `id  name`, its children indented by a tab
//! (`\tid  name`), grandchildren by two tabs.

use std::fs;

/// Where distributions keep pci.ids (the paths Incus's pcidb reads).
const PCI_IDS: &[&str] = &["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];
/// Where distributions keep usb.ids.
const USB_IDS: &[&str] = &[
    "/usr/share/hwdata/usb.ids",
    "/usr/share/misc/usb.ids",
    "/var/lib/usbutils/usb.ids",
];

/// One database's text; none where it is not installed (names stay empty).
pub struct IdDatabase {
    text: Option<String>,
}

impl IdDatabase {
    /// pci.ids. Read once per probe: the PCI, network and GPU sections share it.
    pub fn pci() -> IdDatabase {
        Self::first_of(PCI_IDS)
    }

    pub fn usb() -> IdDatabase {
        Self::first_of(USB_IDS)
    }

    fn first_of(paths: &[&str]) -> IdDatabase {
        IdDatabase {
            text: paths.iter().find_map(|path| fs::read_to_string(path).ok()),
        }
    }

    pub fn from_text(text: &str) -> IdDatabase {
        IdDatabase {
            text: Some(text.to_string()),
        }
    }

    /// (vendor name, device name); empty where unknown.
    pub fn device(&self, vendor_id: &str, device_id: &str) -> (String, String) {
        self.lookup(None, vendor_id, device_id)
    }

    /// (class name, subclass name) of a USB interface (`C 03  Human Interface Device`).
    pub fn class(&self, class: u64, subclass: u64) -> (String, String) {
        self.lookup(Some("C "), &format!("{class:02x}"), &format!("{subclass:02x}"))
    }

    /// A top-level entry (`prefix` + `id  name`; without a prefix, a vendor
    /// line, which starts with a hex digit) and one of its children.
    fn lookup(&self, prefix: Option<&str>, id: &str, child: &str) -> (String, String) {
        let Some(text) = &self.text else {
            return Default::default();
        };
        let mut parent: Option<&str> = None;
        for line in text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
        {
            match line.strip_prefix('\t') {
                None => {
                    if parent.is_some() {
                        break;
                    }
                    let rest = match prefix {
                        Some(prefix) => line.strip_prefix(prefix),
                        None => line.chars().next().filter(char::is_ascii_hexdigit).map(|_| line),
                    };
                    parent = rest.and_then(|rest| named(rest, id));
                }
                // A child of our entry; grandchildren (two tabs) are skipped.
                Some(rest) if parent.is_some() && !rest.starts_with('\t') => {
                    if let Some(name) = named(rest, child) {
                        return (parent.unwrap_or_default().to_string(), name.to_string());
                    }
                }
                _ => {}
            }
        }
        (parent.unwrap_or_default().to_string(), String::new())
    }
}

/// The name on a line `id  name` when its id is `id`.
fn named<'a>(line: &'a str, id: &str) -> Option<&'a str> {
    let (line_id, name) = line.split_once("  ")?;
    (!id.is_empty() && line_id.eq_ignore_ascii_case(id)).then(|| name.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_database_every_name_is_empty() {
        let absent = IdDatabase { text: None };
        assert_eq!(absent.device("8086", "1533"), Default::default());
        assert_eq!(absent.class(3, 1), Default::default());
    }

    /// pci.ids ends with class lines (`C 02  Network controller`): they are
    /// not vendors, though `C` is a hex digit.
    #[test]
    fn class_lines_are_not_vendors() {
        let names = IdDatabase::from_text("C 0c  Serial bus controller\n\t03  USB controller\n");
        assert_eq!(names.device("0c", "03"), Default::default());
        assert_eq!(names.device("", "03"), Default::default());
    }
}
