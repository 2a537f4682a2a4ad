//! Small tools the layers above share, knowing nothing of nodecache.

pub mod clock;
pub(crate) mod singleflight;
pub mod when;
