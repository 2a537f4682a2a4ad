//! The hardware id databases (pci.ids, usb.ids): names for vendor, device
//! and class ids, where the distribution installs them. Both files share one
//! format: a top-level line `id  name`, its children indented by a tab
//! (`\tid  name`), grandchildren by two tabs.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where distributions keep pci.ids (the paths Incus's pcidb reads).
/// The most of an ids file read: pci.ids is 1.3 MB, usb.ids 0.7 MB.
const IDS_BYTES: u64 = 32 << 20;

const PCI_IDS: &[&str] = &["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];
/// Where distributions keep usb.ids.
const USB_IDS: &[&str] = &[
    "/usr/share/hwdata/usb.ids",
    "/usr/share/misc/usb.ids",
    "/var/lib/usbutils/usb.ids",
];

/// One database, indexed by its top-level entries; empty where it is not
/// installed (names stay empty).
///
/// pci.ids is about 1.3 MB: one pass finds where each vendor's (and
/// class's) block starts, so a lookup reads one block instead of scanning
/// the file from the top (5.7 ms for this VM's six PCI functions), and the
/// index is kept while the file stays as it was.
#[derive(Default)]
pub struct IdDatabase {
    text: String,
    /// A top-level entry's id (`8086`, or `c 02` for a class; lowercase):
    /// its name and its children's lines, as byte ranges of `text`.
    entries: HashMap<String, (Range<usize>, Range<usize>)>,
}

impl IdDatabase {
    /// pci.ids: the PCI, network and GPU sections share it.
    pub fn pci() -> Arc<IdDatabase> {
        static PCI: Mutex<Option<Indexed>> = Mutex::new(None);
        Self::kept(&PCI, PCI_IDS)
    }

    pub fn usb() -> Arc<IdDatabase> {
        static USB: Mutex<Option<Indexed>> = Mutex::new(None);
        Self::kept(&USB, USB_IDS)
    }

    /// The first installed database of `paths`, indexed once per process
    /// and again when the file changes (a package upgrade under `serve`):
    /// a probe then pays one `stat` for it.
    fn kept(slot: &Mutex<Option<Indexed>>, paths: &[&'static str]) -> Arc<IdDatabase> {
        let Some((path, stamp)) = paths
            .iter()
            .find_map(|path| Some((*path, Stamp::of(&fs::metadata(path).ok()?))))
        else {
            return Arc::default();
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(kept) = slot
            .as_ref()
            .filter(|kept| kept.path == path && kept.stamp == stamp)
        {
            return kept.database.clone();
        }
        // Through the one reader: a regular file, bounded (pci.ids is
        // 1.3 MB), so whatever sits at the path cannot hang or flood a probe.
        let database = Arc::new(
            crate::file_read::read(Path::new(path), crate::file_read::Rule::reread(IDS_BYTES))
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(IdDatabase::from_owned)
                .unwrap_or_default(),
        );
        *slot = Some(Indexed {
            path,
            stamp,
            database: database.clone(),
        });
        database
    }

    pub fn from_text(text: &str) -> IdDatabase {
        Self::from_owned(text.to_string())
    }

    fn from_owned(text: String) -> IdDatabase {
        let mut entries = HashMap::new();
        let mut open: Option<(String, Range<usize>, usize)> = None;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            if line.starts_with(['\t', '#', '\n', '\r']) {
                continue;
            }
            if let Some((id, name, children)) = open.take() {
                entries.entry(id).or_insert((name, children..start));
            }
            let content = line.trim_end();
            let Some((id, name)) = content.split_once("  ") else {
                continue;
            };
            let name_start = start + id.len() + 2 + (name.len() - name.trim_start().len());
            let name_range = name_start..start + content.len();
            open = Some((id.to_ascii_lowercase(), name_range, offset));
        }
        if let Some((id, name, children)) = open {
            entries.entry(id).or_insert((name, children..offset));
        }
        IdDatabase { text, entries }
    }

    /// (vendor name, device name); empty where unknown.
    pub fn device(&self, vendor_id: &str, device_id: &str) -> (String, String) {
        self.lookup(vendor_id, device_id)
    }

    /// (class name, subclass name) of a USB interface (`C 03  Human Interface Device`).
    pub fn class(&self, class: u64, subclass: u64) -> (String, String) {
        self.lookup(&format!("C {class:02x}"), &format!("{subclass:02x}"))
    }

    /// A top-level entry and one of its children (grandchildren, two tabs
    /// in, are not children).
    fn lookup(&self, id: &str, child: &str) -> (String, String) {
        if id.is_empty() {
            return Default::default();
        }
        let Some((name, children)) = self.entries.get(&id.to_ascii_lowercase()) else {
            return Default::default();
        };
        let child_name = self.text[children.clone()]
            .lines()
            .filter_map(|line| line.strip_prefix('\t'))
            .filter(|rest| !rest.starts_with('\t'))
            .find_map(|rest| named(rest, child))
            .unwrap_or_default();
        (self.text[name.clone()].to_string(), child_name.to_string())
    }
}

/// An indexed database and the file it was read from, as it was then.
struct Indexed {
    path: &'static str,
    stamp: Stamp,
    database: Arc<IdDatabase>,
}

/// What changes when a file is replaced or rewritten.
#[derive(PartialEq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Stamp {
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        }
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
        let absent = IdDatabase::default();
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

    /// Lines as pci.ids and usb.ids write them: comments between blocks, a
    /// vendor with devices and subsystems, a class with subclasses.
    #[test]
    fn entries_and_their_children_are_found_by_id() {
        let names = IdDatabase::from_text(
            "# pci.ids\n\
             10de  NVIDIA Corporation\n\
             \t1287  GK208B [GeForce GT 730]\n\
             \t\t1043 8505  GeForce GT 730 (subsystem)\n\
             # a comment inside the list\n\
             1af4  Red Hat, Inc.\n\
             \t1000  Virtio network device\n\
             C 03  Human Interface Device\n\
             \t01  Boot Interface Subclass\n",
        );
        assert_eq!(
            names.device("10DE", "1287"),
            ("NVIDIA Corporation".into(), "GK208B [GeForce GT 730]".into())
        );
        assert_eq!(
            names.device("10de", "1043"),
            ("NVIDIA Corporation".into(), String::new())
        );
        assert_eq!(
            names.device("1af4", "1000"),
            ("Red Hat, Inc.".into(), "Virtio network device".into())
        );
        assert_eq!(
            names.class(3, 1),
            ("Human Interface Device".into(), "Boot Interface Subclass".into())
        );
        assert_eq!(names.device("8086", "1533"), Default::default());
    }
}
