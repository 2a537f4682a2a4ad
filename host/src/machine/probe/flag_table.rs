//! Which CPUID bit is which Linux flag name: the Linux-named rows of the
//! one flag table (`machine::names`, from the kernel's `cpufeatures.h`);
//! flags the kernel synthesises (no single CPUID bit) are not in it and
//! come from /proc/cpuinfo.

use std::sync::OnceLock;

use crate::machine::names::{self, BitPlace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// One named CPUID feature bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuidBit {
    pub name: &'static str,
    pub leaf: u32,
    pub subleaf: u32,
    pub register: Register,
    pub bit: u8,
}

/// Every named bit, in the table's order.
pub fn cpuid_bits() -> &'static [CpuidBit] {
    static BITS: OnceLock<Vec<CpuidBit>> = OnceLock::new();
    BITS.get_or_init(|| names::linux_named().iter().filter_map(cpuid_bit).collect())
}

fn cpuid_bit(row: &names::FlagNames) -> Option<CpuidBit> {
    let BitPlace::Cpuid {
        leaf,
        subleaf,
        register,
        bit,
    } = row.place
    else {
        return None;
    };
    Some(CpuidBit {
        name: row.linux,
        leaf,
        subleaf,
        register: [Register::Eax, Register::Ebx, Register::Ecx, Register::Edx][usize::from(register)],
        bit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_names_are_unique() {
        let bits = cpuid_bits();
        assert!(bits.len() > 200, "{}", bits.len());
        let mut names: Vec<_> = bits.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), bits.len());
    }

    #[test]
    fn well_known_bits_are_where_intel_and_amd_put_them() {
        let find = |name: &str| cpuid_bits().iter().find(|b| b.name == name).unwrap().clone();
        let sse4_2 = find("sse4_2");
        assert_eq!(
            (sse4_2.leaf, sse4_2.subleaf, sse4_2.register, sse4_2.bit),
            (1, 0, Register::Ecx, 20)
        );
        let avx512f = find("avx512f");
        assert_eq!(
            (avx512f.leaf, avx512f.register, avx512f.bit),
            (7, Register::Ebx, 16)
        );
        let lm = find("lm");
        assert_eq!((lm.leaf, lm.register, lm.bit), (0x8000_0001, Register::Edx, 29));
        let bf16 = find("avx512_bf16");
        assert_eq!(
            (bf16.leaf, bf16.subleaf, bf16.register, bf16.bit),
            (7, 1, Register::Eax, 5)
        );
        let named = |name: &str| cpuid_bits().iter().any(|bit| bit.name == name);
        assert!(!named("constant_tsc"), "kernel-synthesised, no CPUID bit");
        assert!(named("pclmulqdq"));
    }
}
