//! Fragmented MP4 (ISO/IEC 14496-12 `moof`/`mdat` fragments) for H.264 streams: the header
//! (`ftyp` + `moov` with an empty sample table and `mvex`) is written once, then every call to
//! [`Fragmented::append`] adds one self-contained fragment and flushes it. A file cut after any
//! fragment is a playable video, so a long generation can be watched while it grows (ffplay,
//! VLC, browsers). The `mp4` crate only writes the classic layout (`moov` at the end, known
//! once every sample is), hence this small writer.

use std::io::Write;

/// A box: 32-bit size, type, body.
pub fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A full box: version and flags before the body.
fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    mp4_box(kind, &b)
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// The identity transform matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `sample_flags` (ISO 14496-12 §8.8.3.1): a sync sample depends on nothing; any other sample
/// depends on others and is marked non-sync so players seek to key frames only.
const SYNC_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// One encoded picture: length-prefixed NAL units (AVCC layout) and whether it is an IDR.
pub struct Sample {
    pub data: Vec<u8>,
    pub sync: bool,
}

pub struct Fragmented<W: Write> {
    out: W,
    sequence: u32,
    decode_time: u64,
    /// Ticks per frame in the track's timescale (`fps * 1000` ticks per second).
    duration: u32,
}

impl<W: Write> Fragmented<W> {
    /// Writes `ftyp` and `moov` (with the `udta` box of `tags`, if any) at once: everything
    /// a player needs before the first fragment.
    pub fn start(mut out: W, width: u16, height: u16, fps: u32, sps: &[u8], pps: &[u8], udta: Option<&[u8]>) -> std::io::Result<Self> {
        let timescale = fps.max(1) * 1000;
        let mut ftyp = Vec::new();
        ftyp.extend_from_slice(b"isom");
        ftyp.extend_from_slice(&be32(512));
        for brand in [b"isom", b"iso6", b"avc1", b"mp41"] {
            ftyp.extend_from_slice(brand);
        }
        out.write_all(&mp4_box(b"ftyp", &ftyp))?;

        // Durations are 0 (unknown) in the header: the fragments carry the timing.
        let mut mvhd = Vec::new();
        mvhd.extend_from_slice(&[0; 8]); // creation, modification time
        mvhd.extend_from_slice(&be32(1000));
        mvhd.extend_from_slice(&be32(0));
        mvhd.extend_from_slice(&be32(0x0001_0000)); // rate 1.0
        mvhd.extend_from_slice(&[0x01, 0x00]); // volume 1.0
        mvhd.extend_from_slice(&[0; 10]);
        MATRIX.iter().for_each(|m| mvhd.extend_from_slice(&be32(*m)));
        mvhd.extend_from_slice(&[0; 24]); // pre_defined
        mvhd.extend_from_slice(&be32(2)); // next_track_ID

        let mut tkhd = Vec::new();
        tkhd.extend_from_slice(&[0; 8]);
        tkhd.extend_from_slice(&be32(1)); // track_ID
        tkhd.extend_from_slice(&[0; 4]);
        tkhd.extend_from_slice(&be32(0)); // duration
        tkhd.extend_from_slice(&[0; 8]);
        tkhd.extend_from_slice(&[0; 8]); // layer, alternate_group, volume, reserved
        MATRIX.iter().for_each(|m| tkhd.extend_from_slice(&be32(*m)));
        tkhd.extend_from_slice(&be32((width as u32) << 16));
        tkhd.extend_from_slice(&be32((height as u32) << 16));

        let mut mdhd = Vec::new();
        mdhd.extend_from_slice(&[0; 8]);
        mdhd.extend_from_slice(&be32(timescale));
        mdhd.extend_from_slice(&be32(0));
        mdhd.extend_from_slice(&[0x55, 0xC4, 0, 0]); // language "und", pre_defined

        let mut hdlr = vec![0; 4];
        hdlr.extend_from_slice(b"vide");
        hdlr.extend_from_slice(&[0; 12]);
        hdlr.extend_from_slice(b"VideoHandler\0");

        let vmhd = full_box(b"vmhd", 0, 1, &[0; 8]);
        let dinf = mp4_box(b"dinf", &full_box(b"dref", 0, 0, &[be32(1).as_slice(), &full_box(b"url ", 0, 1, &[])].concat()));

        let mut avcc = vec![1, sps.get(1).copied().unwrap_or(66), sps.get(2).copied().unwrap_or(0), sps.get(3).copied().unwrap_or(30), 0xFF, 0xE1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(pps);
        if matches!(sps.get(1), Some(100 | 110 | 122 | 144)) {
            // High profiles also carry chroma format (4:2:0) and bit depths (8).
            avcc.extend_from_slice(&[0xFD, 0xF8, 0xF8, 0]);
        }
        let mut avc1 = vec![0; 6];
        avc1.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
        avc1.extend_from_slice(&[0; 16]);
        avc1.extend_from_slice(&width.to_be_bytes());
        avc1.extend_from_slice(&height.to_be_bytes());
        avc1.extend_from_slice(&be32(0x0048_0000)); // 72 dpi
        avc1.extend_from_slice(&be32(0x0048_0000));
        avc1.extend_from_slice(&be32(0));
        avc1.extend_from_slice(&1u16.to_be_bytes()); // frame_count
        avc1.extend_from_slice(&[0; 32]); // compressorname
        avc1.extend_from_slice(&[0x00, 0x18, 0xFF, 0xFF]); // depth 24, pre_defined -1
        avc1.extend(mp4_box(b"avcC", &avcc));
        let stsd = full_box(b"stsd", 0, 0, &[be32(1).as_slice(), &mp4_box(b"avc1", &avc1)].concat());
        let stbl = [
            stsd,
            full_box(b"stts", 0, 0, &be32(0)),
            full_box(b"stsc", 0, 0, &be32(0)),
            full_box(b"stsz", 0, 0, &[0; 8]),
            full_box(b"stco", 0, 0, &be32(0)),
        ]
        .concat();
        let minf = mp4_box(b"minf", &[vmhd, dinf, mp4_box(b"stbl", &stbl)].concat());
        let mdia = mp4_box(b"mdia", &[full_box(b"mdhd", 0, 0, &mdhd), full_box(b"hdlr", 0, 0, &hdlr), minf].concat());
        let trak = mp4_box(b"trak", &[full_box(b"tkhd", 0, 3, &tkhd), mdia].concat());
        let duration = 1000;
        let trex = full_box(b"trex", 0, 0, &[be32(1), be32(1), be32(duration), be32(0), be32(0)].concat());
        let mut moov = [full_box(b"mvhd", 0, 0, &mvhd), trak, mp4_box(b"mvex", &trex)].concat();
        if let Some(u) = udta {
            moov.extend_from_slice(u);
        }
        out.write_all(&mp4_box(b"moov", &moov))?;
        out.flush()?;
        Ok(Fragmented { out, sequence: 0, decode_time: 0, duration })
    }

    /// Appends `samples` as one `moof` + `mdat` fragment and flushes it.
    pub fn append(&mut self, samples: &[Sample]) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        self.sequence += 1;
        let n = samples.len();
        let payload: usize = samples.iter().map(|s| s.data.len()).sum();
        let build = |data_offset: u32| {
            let mut trun = Vec::with_capacity(8 + 12 * n);
            trun.extend_from_slice(&be32(n as u32));
            trun.extend_from_slice(&be32(data_offset));
            for s in samples {
                trun.extend_from_slice(&be32(self.duration));
                trun.extend_from_slice(&be32(s.data.len() as u32));
                trun.extend_from_slice(&be32(if s.sync { SYNC_FLAGS } else { NON_SYNC_FLAGS }));
            }
            // tfhd: default-base-is-moof, so data offsets count from this fragment's moof.
            let traf = [
                full_box(b"tfhd", 0, 0x02_0000, &be32(1)),
                full_box(b"tfdt", 1, 0, &self.decode_time.to_be_bytes()),
                // data-offset, sample-duration, sample-size and sample-flags present
                full_box(b"trun", 0, 0x0701, &trun),
            ]
            .concat();
            mp4_box(b"moof", &[full_box(b"mfhd", 0, 0, &be32(self.sequence)), mp4_box(b"traf", &traf)].concat())
        };
        let size = build(0).len();
        let moof = build((size + 8) as u32);
        let mdat_size = u32::try_from(8 + payload).map_err(|_| std::io::Error::other("fragment over 4 GiB"))?;
        self.out.write_all(&moof)?;
        self.out.write_all(&mdat_size.to_be_bytes())?;
        self.out.write_all(b"mdat")?;
        for s in samples {
            self.out.write_all(&s.data)?;
        }
        self.out.flush()?;
        self.decode_time += n as u64 * self.duration as u64;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
