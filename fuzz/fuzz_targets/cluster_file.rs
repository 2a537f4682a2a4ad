//! The cluster file: whatever it says, an error or members with valid names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache_input::cluster_file::ClusterFile;
use nodecache_input::node_name::NodeName;

fuzz_target!(|text: &str| {
    if let Ok(membership) = ClusterFile::from_text(text, std::path::Path::new("/etc/nodecache")) {
        for member in &membership.cluster.members {
            assert!(NodeName::parse(member.name.as_str()).is_ok());
        }
    }
});
