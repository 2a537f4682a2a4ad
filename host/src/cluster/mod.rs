//! The cluster: its members (the cluster file, with Incus's member list
//! read on every run), every member asked through the policy at once
//! ([`gather`]), the report of what they share and where each node's data
//! came from ([`report`]), and `serve`'s long-lived cluster with its
//! shared computations ([`service`]), a member's certificate pinned
//! into the cluster file ([`pin_member`]), and what changed the baseline
//! since it was last computed ([`baseline_change`]).

pub mod baseline_change;
pub mod gather;
pub(crate) mod incus_members;
pub(crate) mod pin_member;
pub mod report;
pub(crate) mod service;
