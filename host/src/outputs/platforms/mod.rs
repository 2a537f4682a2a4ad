//! The guest CPU in the terms of the platforms that run QEMU for their
//! operators, one module each: Proxmox VE's custom CPU models
//! ([`proxmox`]), OpenStack Nova's `[libvirt]` CPU options ([`nova`]),
//! KubeVirt's VirtualMachine CPU ([`kubevirt`]), and Kubernetes Node
//! Feature Discovery's feature files ([`nfd`]).

pub(crate) mod kubevirt;
pub(crate) mod nfd;
pub(crate) mod nova;
pub(crate) mod proxmox;

pub use kubevirt::kubevirt_cpu;
pub use nfd::nfd_features;
pub use nova::nova_fragment;
pub use proxmox::{check_model_name, proxmox_section};

/// A model by the name the platforms list: QEMU's `X` is its alias of
/// `X-v1`, and Proxmox, KubeVirt's labeller and Nova name the alias.
fn unversioned(model: &str) -> &str {
    model.strip_suffix("-v1").unwrap_or(model)
}
