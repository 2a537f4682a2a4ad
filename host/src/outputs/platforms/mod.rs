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
