//! What the kernel's ethtool interface says of a network port: its link,
//! speed, duplex, port and transceiver type, supported modes, permanent
//! address and firmware. Incus asks the same `SIOCETHTOOL` ioctls, so the
//! two documents agree; sysfs does not carry these.
//!
//! One of the probe's two unsafe parts (`probe::cpuid` pins the probing
//! thread with `sched_setaffinity`): each request is a C struct the kernel
//! fills through a pointer in an `ifreq`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSET: u32 = 0x01;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GLINK: u32 = 0x0a;
const ETHTOOL_GPERMADDR: u32 = 0x20;
const ETHTOOL_GLINKSETTINGS: u32 = 0x4c;

/// Mask words the kernel may ask for (SCHAR_MAX), three masks of them.
const MASK_WORDS_MAX: usize = 127;

/// `struct ifreq` with `ifr_data`.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut libc::c_void,
    _rest: [u8; 16],
}

/// `struct ethtool_link_settings` and room for its three link-mode masks.
#[repr(C)]
struct LinkSettingsRequest {
    cmd: u32,
    speed: u32,
    duplex: u8,
    port: u8,
    phy_address: u8,
    autoneg: u8,
    mdio_support: u8,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    link_mode_masks_nwords: i8,
    transceiver: u8,
    master_slave_cfg: u8,
    master_slave_state: u8,
    rate_matching: u8,
    reserved: [u32; 7],
    masks: [u32; 3 * MASK_WORDS_MAX],
}

/// The legacy `struct ethtool_cmd`, for drivers without link settings.
#[repr(C)]
#[derive(Default)]
struct LegacyRequest {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

#[repr(C)]
struct DriverInfoRequest {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct PermanentAddressRequest {
    cmd: u32,
    size: u32,
    data: [u8; 32],
}

#[repr(C)]
struct ValueRequest {
    cmd: u32,
    data: u32,
}

/// A port's settings as the driver reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkSettings {
    pub autoneg: bool,
    /// 0 half, 1 full, else unknown.
    pub duplex: u8,
    /// Mbit/s, where known.
    pub speed: Option<u64>,
    pub port: u8,
    pub transceiver: u8,
    /// The supported link modes, one bit each (`ETHTOOL_LINK_MODE_*`).
    pub supported: Vec<u32>,
}

/// A socket to ask ethtool questions on.
pub struct Ethtool {
    socket: OwnedFd,
}

impl Ethtool {
    pub fn open() -> io::Result<Ethtool> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IP,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor this function alone owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ethtool { socket })
    }

    /// One `SIOCETHTOOL` request on interface `name`; `request` is the
    /// command struct, starting with its `cmd` word.
    fn ask<T>(&self, name: &str, request: &mut T) -> io::Result<()> {
        let mut ifreq = IfReq {
            name: [0; 16],
            data: (request as *mut T).cast(),
            _rest: [0; 16],
        };
        let bytes = name.as_bytes();
        if bytes.len() >= ifreq.name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        ifreq.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: `ifreq` is a valid `struct ifreq` whose data pointer points
        // at `request`, a `#[repr(C)]` ethtool struct of the size the kernel
        // expects for its `cmd`; both outlive the call.
        let done = unsafe { libc::ioctl(self.socket.as_raw_fd(), SIOCETHTOOL as _, &mut ifreq) };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the link is up (`ETHTOOL_GLINK`).
    pub fn link_detected(&self, name: &str) -> io::Result<bool> {
        let mut request = ValueRequest {
            cmd: ETHTOOL_GLINK,
            data: 0,
        };
        self.ask(name, &mut request)?;
        Ok(request.data == 1)
    }

    /// The permanent hardware address, as `aa:bb:cc:dd:ee:ff`.
    pub fn permanent_address(&self, name: &str) -> Option<String> {
        let mut request = PermanentAddressRequest {
            cmd: ETHTOOL_GPERMADDR,
            size: 32,
            data: [0; 32],
        };
        self.ask(name, &mut request).ok()?;
        let size = (request.size as usize).min(request.data.len());
        Some(
            request.data[..size]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        )
    }

    /// The driver's firmware version (`ETHTOOL_GDRVINFO`).
    pub fn firmware_version(&self, name: &str) -> io::Result<String> {
        // SAFETY: an all-zero `DriverInfoRequest` is valid (integers and byte arrays).
        let mut request: DriverInfoRequest = unsafe { std::mem::zeroed() };
        request.cmd = ETHTOOL_GDRVINFO;
        self.ask(name, &mut request)?;
        Ok(c_string(&request.fw_version))
    }

    /// Link settings: `ETHTOOL_GLINKSETTINGS`, else the legacy
    /// `ETHTOOL_GSET`; `Ok(None)` where the driver supports neither.
    pub fn link_settings(&self, name: &str) -> io::Result<Option<LinkSettings>> {
        match self.modern_link_settings(name) {
            Ok(settings) => Ok(Some(settings)),
            Err(_) => self.legacy_link_settings(name),
        }
    }

    fn modern_link_settings(&self, name: &str) -> io::Result<LinkSettings> {
        // SAFETY: an all-zero request is valid (integers and arrays).
        let mut request: Box<LinkSettingsRequest> = Box::new(unsafe { std::mem::zeroed() });
        request.cmd = ETHTOOL_GLINKSETTINGS;
        // The first answer gives the size of the masks, negated.
        self.ask(name, &mut *request)?;
        let words = -i32::from(request.link_mode_masks_nwords);
        if words <= 0 || words as usize > MASK_WORDS_MAX || request.cmd != ETHTOOL_GLINKSETTINGS {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        request.link_mode_masks_nwords = words as i8;
        self.ask(name, &mut *request)?;
        if request.link_mode_masks_nwords != words as i8 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(LinkSettings {
            autoneg: request.autoneg == 1,
            duplex: request.duplex,
            speed: (request.speed != u32::MAX).then_some(u64::from(request.speed)),
            port: request.port,
            transceiver: request.transceiver,
            supported: request.masks[..words as usize].to_vec(),
        })
    }

    fn legacy_link_settings(&self, name: &str) -> io::Result<Option<LinkSettings>> {
        let mut request = LegacyRequest {
            cmd: ETHTOOL_GSET,
            ..LegacyRequest::default()
        };
        match self.ask(name, &mut request) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENODEV)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let speed = u64::from(request.speed_hi) << 16 | u64::from(request.speed);
        Ok(Some(LinkSettings {
            autoneg: request.autoneg == 1,
            duplex: request.duplex,
            speed: (speed != 65_535 && speed != u64::from(u32::MAX)).then_some(speed),
            port: request.port,
            transceiver: request.transceiver,
            supported: vec![request.supported],
        }))
    }
}

/// A NUL-padded C string.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structs are the kernel's sizes (include/uapi/linux/ethtool.h).
    #[test]
    fn request_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LegacyRequest>(), 44);
        assert_eq!(std::mem::size_of::<DriverInfoRequest>(), 196);
        assert_eq!(std::mem::offset_of!(LinkSettingsRequest, masks), 48);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    /// Loopback has no ethtool link settings but answers GLINK; a name
    /// that is no interface is an error, not a panic.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_answers_for_its_interfaces() {
        let ethtool = Ethtool::open().unwrap();
        assert!(ethtool.link_detected("lo").is_ok());
        assert!(ethtool.link_detected("no-such-if0").is_err());
        assert!(ethtool.link_detected("a-name-far-too-long-for-ifreq").is_err());
    }
}
