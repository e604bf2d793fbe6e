//! The PTX ISA version matching an installed CUDA driver.

use core::fmt;

/// A PTX ISA version, written as major * 10 + minor (ISA 8.7 is `87`).
///
/// cubecl-cuda computes one from the driver version at device creation, stores it in its
/// compilation options, and, for the LLVM backend only, puts its `Display` form (`ptx87`) in
/// the name of its compiled-kernel cache. With the CUDA C++ backend the value is carried but not
/// used: NVRTC picks the PTX version itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// The newest PTX ISA that LLVM 23 emits: 9.3. Newer drivers still load it.
    const NEWEST: u32 = 93;

    /// The newest PTX ISA version a driver loads, given the driver's CUDA version as
    /// `cuDriverGetVersion` reports it (`12080` for CUDA 12.8). `None` before CUDA 10.0.
    ///
    /// The mapping follows the PTX ISA release notes: CUDA 10.x ships ISA 6.3 to 6.5, 11.x
    /// ships 7.x with the same minor number, 12.0 to 12.5 ship 8.0 to 8.5, 12.6 stays at 8.5,
    /// 12.8 ships 8.7, 12.9 ships 8.8, and 13.x ships 9.x. Versions after the newest one known
    /// here are capped at [`Self::NEWEST`]; minor releases between known ones get the version
    /// of the last known release before them.
    pub fn for_driver(driver: i32) -> Option<Self> {
        if driver < 10_000 {
            return None;
        }
        let major = driver / 1000;
        let minor = (driver % 1000 / 10) as u32;
        let isa = match major {
            10 => 63 + minor.min(2),
            11 => 70 + minor.min(8),
            12 => match minor {
                0..=5 => 80 + minor,
                6 | 7 => 85,
                8 => 87,
                _ => 88,
            },
            13 => 90 + minor,
            _ => Self::NEWEST,
        };
        Some(Self(isa.min(Self::NEWEST)))
    }

    /// The ISA version as major * 10 + minor.
    pub fn isa(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PtxVersion {
    /// Written as the NVPTX target feature names it: `ptx87`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PtxVersion;

    fn isa(driver: i32) -> Option<u32> {
        PtxVersion::for_driver(driver).map(PtxVersion::isa)
    }

    #[test]
    fn maps_drivers_to_isa_versions() {
        assert_eq!(isa(9_020), None);
        assert_eq!(isa(10_000), Some(63));
        assert_eq!(isa(10_020), Some(65));
        assert_eq!(isa(11_000), Some(70));
        assert_eq!(isa(11_080), Some(78));
        assert_eq!(isa(12_000), Some(80));
        assert_eq!(isa(12_050), Some(85));
        assert_eq!(isa(12_060), Some(85));
        assert_eq!(isa(12_080), Some(87));
        assert_eq!(isa(12_090), Some(88));
        assert_eq!(isa(13_000), Some(90));
        assert_eq!(isa(13_030), Some(93));
        assert_eq!(isa(13_050), Some(93));
        assert_eq!(isa(14_000), Some(93));
    }

    #[test]
    fn displays_as_the_target_feature() {
        assert_eq!(PtxVersion::for_driver(12_080).unwrap().to_string(), "ptx87");
    }
}
