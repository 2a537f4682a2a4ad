//! What this node's KVM can give a migratable guest, read natively and fast
//! from `/dev/kvm` (no QEMU started): `KVM_GET_SUPPORTED_CPUID`, the feature
//! MSRs (`KVM_GET_MSR_FEATURE_INDEX_LIST`, `KVM_GET_MSRS` on the system fd),
//! then what QEMU adds and removes on top for its `host` model with
//! `migratable=on` (QEMU's `kvm_arch_get_supported_cpuid` fix-ups, its
//! `no_autoenable_flags` and unmigratable bits), and only the bits QEMU has
//! a property for. Tests compare the result with the installed QEMU's
//! `query-cpu-model-expansion` of `host` under `-accel kvm` and with
//! libvirt's `hypervisor-cpu-baseline --migratable`.

use crate::api::resources::Hypervisor;

/// This node's hypervisor set, or why there is none.
pub fn probe() -> Hypervisor {
    match kvm::guest_flags() {
        Ok(flags) => Hypervisor {
            accelerator: "kvm".into(),
            flags: Some(flags),
            unavailable: None,
        },
        Err(why) => Hypervisor {
            accelerator: "kvm".into(),
            flags: None,
            unavailable: Some(why),
        },
    }
}

/// What the hypervisor set is made from, without the throwaway vCPU that
/// makes the probe cost what it does: KVM's supported CPUID and feature
/// MSRs as it reports them (or why it cannot). The hardware fingerprint
/// hashes it, so a `304` says nothing changed here either.
pub fn identity() -> String {
    kvm::identity()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod kvm {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, Msrs, kvm_msr_entry};
    use kvm_ioctls::{Cap, Kvm};

    use crate::machine::names::{self, BitPlace};

    const KVM_DEVICE: &str = "/dev/kvm";
    const MSR_ARCH_CAPABILITIES: u32 = 0x10a;

    /// What KVM reports, read once per probe: its supported CPUID, whether
    /// QEMU would add `tsc-deadline` and keep `arch-capabilities`, and the
    /// feature MSRs' values.
    struct Reported {
        kvm: Kvm,
        cpuid: kvm_bindings::CpuId,
        tsc_deadline: bool,
        arch_capabilities_msr: bool,
        feature_msrs: BTreeMap<u32, u64>,
        /// This CPU's own leaves 7.0, 7.1 and 7.2, and whether its TSX is
        /// broken: read once (CPUID in a guest traps to the hypervisor).
        host_7: [[u32; 4]; 3],
        host_tsx_broken: bool,
    }

    impl Reported {
        fn read() -> Result<Reported, String> {
            let kvm = Kvm::new().map_err(|e| format!("{KVM_DEVICE}: {e}"))?;
            let cpuid = kvm
                .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                .map_err(|e| format!("{KVM_DEVICE}: KVM_GET_SUPPORTED_CPUID: {e}"))?;
            let msr_list = kvm
                .get_msr_index_list()
                .map_err(|e| format!("{KVM_DEVICE}: KVM_GET_MSR_INDEX_LIST: {e}"))?;
            // A kernel without feature MSRs (before 4.19) offers none.
            let indices: Vec<u32> = kvm
                .get_msr_feature_index_list()
                .map(|list| list.as_slice().to_vec())
                .unwrap_or_default();
            let mut feature_msrs = BTreeMap::new();
            for index in indices {
                feature_msrs.insert(index, feature_msr(&kvm, index)?);
            }
            Ok(Reported {
                tsc_deadline: kvm.check_extension(Cap::TscDeadlineTimer),
                host_7: [host_cpuid(7, 0), host_cpuid(7, 1), host_cpuid(7, 2)],
                host_tsx_broken: host_tsx_broken(),
                arch_capabilities_msr: msr_list.as_slice().contains(&MSR_ARCH_CAPABILITIES),
                kvm,
                cpuid,
                feature_msrs,
            })
        }

        /// Everything the set is made from, as text: equal texts, equal
        /// sets. The feature bits as QEMU would see them, not KVM's raw
        /// CPUID: that carries the APIC ID of whichever CPU the probing
        /// thread ran on, so it differed from call to call.
        fn identity(&self) -> String {
            let mut text: String = names::all()
                .iter()
                .filter_map(|names| match names.place {
                    BitPlace::Cpuid {
                        leaf,
                        subleaf,
                        register,
                        bit,
                    } => (self.register(leaf, subleaf, register) >> bit & 1 == 1).then_some(names.linux),
                    BitPlace::Msr { .. } => None,
                })
                .collect::<Vec<_>>()
                .join(" ");
            text.push_str(&format!(" {:x?}", self.feature_msrs));
            text
        }
    }

    /// The set last made, by the identity of what KVM reported: trying
    /// feature-MSR bits on a vCPU (a VM made and torn down) is most of the
    /// probe's cost, and its answer holds while KVM reports the same.
    static LAST: Mutex<Option<(String, Vec<String>)>> = Mutex::new(None);

    /// The Linux names (feature-MSR bits and bits Linux does not name:
    /// QEMU's) of what a migratable guest can be given here, sorted.
    pub fn guest_flags() -> Result<Vec<String>, String> {
        let reported = Reported::read()?;
        let identity = reported.identity();
        if let Ok(last) = LAST.lock()
            && let Some((known, flags)) = last.as_ref()
            && *known == identity
        {
            return Ok(flags.clone());
        }
        let flags = made_from(&reported)?;
        if let Ok(mut last) = LAST.lock() {
            *last = Some((identity, flags.clone()));
        }
        Ok(flags)
    }

    fn made_from(reported: &Reported) -> Result<Vec<String>, String> {
        let vcpu = Vcpu::new(&reported.kvm, &reported.cpuid)?;
        let mut flags = BTreeSet::new();
        for names in names::all().iter().filter(|names| names.qemu.is_some()) {
            let on = match names.place {
                BitPlace::Cpuid {
                    leaf,
                    subleaf,
                    register,
                    bit,
                } => reported.register(leaf, subleaf, register) >> bit & 1 == 1,
                BitPlace::Msr { index, bit } => {
                    reported
                        .feature_msrs
                        .get(&index)
                        .is_some_and(|value| value >> bit & 1 == 1)
                        && vcpu.accepts(index, 1 << bit)
                }
            };
            if on && is_migratable_and_autoenabled(names.linux) {
                flags.insert(names.linux.to_string());
            }
        }
        // QEMU's feature dependencies that bite on real hosts: the
        // arch-capabilities MSR's bits need the CPUID bit that announces it.
        if !flags.contains("arch_capabilities") {
            flags.retain(|flag| !is_msr_bit_of(flag, MSR_ARCH_CAPABILITIES));
        }
        Ok(flags.into_iter().collect())
    }

    pub fn identity() -> String {
        match Reported::read() {
            Ok(reported) => reported.identity(),
            Err(why) => why,
        }
    }

    fn is_msr_bit_of(flag: &str, msr: u32) -> bool {
        names::by_linux(flag).is_some_and(|n| matches!(n.place, BitPlace::Msr { index, .. } if index == msr))
    }

    /// QEMU leaves some supported bits off `host`: `ht` and `topoext`
    /// (`no_autoenable_flags`: they need a topology QEMU chooses). `invtsc`,
    /// which is not migratable, has no Linux name; `register` drops it.
    fn is_migratable_and_autoenabled(flag: &str) -> bool {
        !matches!(flag, "ht" | "topoext")
    }

    /// A vCPU of a throwaway VM, to ask whether KVM really lets a guest
    /// be given a feature-MSR bit it reports: some KVMs (PVM, for one)
    /// report `IA32_ARCH_CAPABILITIES` bits that a vCPU then refuses, and
    /// QEMU, trusting the report, aborts starting any guest that has them.
    struct Vcpu(kvm_ioctls::VcpuFd);

    impl Vcpu {
        fn new(kvm: &Kvm, cpuid: &kvm_bindings::CpuId) -> Result<Vcpu, String> {
            let vm = kvm
                .create_vm()
                .map_err(|e| format!("{KVM_DEVICE}: KVM_CREATE_VM: {e}"))?;
            let vcpu = vm
                .create_vcpu(0)
                .map_err(|e| format!("{KVM_DEVICE}: KVM_CREATE_VCPU: {e}"))?;
            vcpu.set_cpuid2(cpuid)
                .map_err(|e| format!("{KVM_DEVICE}: KVM_SET_CPUID2: {e}"))?;
            Ok(Vcpu(vcpu))
        }

        /// Whether KVM_SET_MSRS takes `value` for MSR `index` on this vCPU.
        fn accepts(&self, index: u32, value: u64) -> bool {
            Msrs::from_entries(&[kvm_msr_entry {
                index,
                data: value,
                ..Default::default()
            }])
            .is_ok_and(|msrs| self.0.set_msrs(&msrs).is_ok_and(|written| written == 1))
        }
    }

    /// A feature MSR's value as KVM reports it, with QEMU's one fix-up:
    /// `fb-clear` is offered where the host is immune to what it clears.
    fn feature_msr(kvm: &Kvm, index: u32) -> Result<u64, String> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .map_err(|e| format!("MSR {index:#x}: {e:?}"))?;
        let read = kvm
            .get_msrs(&mut msrs)
            .map_err(|e| format!("{KVM_DEVICE}: KVM_GET_MSRS {index:#x}: {e}"))?;
        if read != 1 {
            return Err(format!("{KVM_DEVICE}: KVM_GET_MSRS {index:#x} read {read} MSRs"));
        }
        let mut value = msrs.as_slice()[0].data;
        if index == MSR_ARCH_CAPABILITIES {
            // mds-no, taa-no, sbdr-ssdp-no, fbsdp-no, psdp-no -> fb-clear.
            let immune = (1 << 5) | (1 << 8) | (1 << 13) | (1 << 14) | (1 << 15);
            if value & immune == immune {
                value |= 1 << 17;
            }
        }
        Ok(value)
    }

    impl Reported {
        fn raw(&self, leaf: u32, subleaf: u32, register: u8) -> u32 {
            self.cpuid
                .as_slice()
                .iter()
                .find(|entry| entry.function == leaf && entry.index == subleaf)
                .map(|entry| [entry.eax, entry.ebx, entry.ecx, entry.edx][usize::from(register)])
                .unwrap_or(0)
        }

        /// One register of `leaf.subleaf` as QEMU's
        /// `kvm_arch_get_supported_cpuid` returns it (target/i386/kvm/kvm.c).
        fn register(&self, leaf: u32, subleaf: u32, register: u8) -> u32 {
            const EAX: u8 = 0;
            const EBX: u8 = 1;
            const ECX: u8 = 2;
            const EDX: u8 = 3;
            let mut value = self.raw(leaf, subleaf, register);
            match (leaf, subleaf, register) {
                // mce, mtrr, mca, pat: misreported by KVM before 2.6.30.
                (1, _, EDX) => value |= (1 << 7) | (1 << 12) | (1 << 14) | (1 << 16),
                (1, _, ECX) => {
                    value |= 1 << 31; // hypervisor
                    if self.tsc_deadline {
                        value |= 1 << 24;
                    }
                }
                (6, _, EAX) => value |= 1 << 2, // arat: the APIC is emulated
                (7, 0, EBX) => {
                    value |= self.host_7[0][1] & (1 << 9); // erms
                    if self.host_tsx_broken {
                        value &= !((1 << 4) | (1 << 11)); // hle, rtm
                    }
                }
                (7, 0, EDX) => {
                    value |= self.host_7[0][3] & (1 << 4); // fsrm
                    if !self.arch_capabilities_msr {
                        value &= !(1 << 29);
                    }
                }
                (7, 1, EAX) => value |= self.host_7[1][0] & ((1 << 10) | (1 << 11) | (1 << 12)),
                (7, 2, EDX) => value |= self.host_7[2][3] & (1 << 3), // mcdt-no
                (0x8000_0007, _, EBX) => value |= 0b11,               // overflow-recov, succor
                (0x8000_0007, _, EDX) => value &= !(1 << 8),          // invtsc: not migratable
                _ => {}
            }
            value
        }
    }

    /// This CPU's own CPUID (the bits QEMU copies from the host: they are
    /// optimisations, not instructions a guest could lack).
    fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
        let max = raw_cpuid::cpuid!(0).eax;
        if leaf > max {
            return [0; 4];
        }
        let r = raw_cpuid::cpuid!(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    /// Haswell parts whose TSX microcode turned off (QEMU's `host_tsx_broken`).
    fn host_tsx_broken() -> bool {
        let vendor = raw_cpuid::cpuid!(0);
        let intel = (vendor.ebx, vendor.edx, vendor.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        let signature = raw_cpuid::cpuid!(1).eax;
        let family = (signature >> 8) & 0xf;
        let model = ((signature >> 4) & 0xf) | ((signature >> 12) & 0xf0);
        let stepping = signature & 0xf;
        intel && family == 6 && ((model == 63 && stepping < 4) || matches!(model, 60 | 69 | 70))
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod kvm {
    pub fn guest_flags() -> Result<Vec<String>, String> {
        Err("the hypervisor set is read only on x86_64 Linux".into())
    }

    pub fn identity() -> String {
        String::new()
    }
}
