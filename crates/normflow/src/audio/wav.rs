//! WAV files: RIFF/WAVE with integer PCM (8, 16, 24 or 32 bits) or IEEE float (32 or 64 bits),
//! plain or `WAVE_FORMAT_EXTENSIBLE`. Reading converts every format to `f32` samples in
//! `[-1, 1]` and mixes several channels down to one (their mean); writing produces mono 16-bit
//! PCM or 32-bit float, atomically.

use std::io::Write;
use std::path::Path;

use crate::io::write_atomic;
use crate::{Error, Result};

/// A mono signal and its sample rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Wav {
    /// Samples per second.
    pub sample_rate: u32,
    /// The samples, nominally in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// How the file stored them (reading only tells; [`Wav::write`] takes its own).
    pub source: WavFormat,
}

/// A WAV file's sample format, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    /// Channels in the file (mixed down to one on reading).
    pub channels: u16,
    /// Bits per sample.
    pub bits: u16,
    /// Whether the samples are IEEE floats (else signed integers; unsigned for 8 bits).
    pub float: bool,
}

/// The sample encodings [`Wav::write`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WavEncoding {
    /// 16-bit signed integers: samples are clipped to `[-1, 1]` and rounded.
    Pcm16,
    /// 32-bit IEEE floats, unchanged.
    Float32,
}

const PCM: u16 = 1;
const IEEE_FLOAT: u16 = 3;
const EXTENSIBLE: u16 = 0xFFFE;

impl Wav {
    /// Reads a WAV file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::BadFile`] naming the file for anything that
    /// is not a complete RIFF/WAVE file of a supported format (a truncated header or data chunk,
    /// no `fmt ` or `data` chunk, A-law, µ-law or compressed data, an odd bit depth, no
    /// channels, a zero sample rate), and for a NaN or infinite float sample, naming it.
    pub fn read(path: &Path) -> Result<Wav> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes).map_err(|message| Error::BadFile { path: path.into(), message })
    }

    /// Parses the bytes of a WAV file; the error says what is wrong.
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Wav, String> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err("not a WAV file (no RIFF/WAVE header)".into());
        }
        let mut format = None;
        let mut data = None;
        let mut at = 12;
        while at + 8 <= bytes.len() {
            let id = &bytes[at..at + 4];
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
            let body = at + 8;
            let available = bytes.len() - body;
            if id == b"data" {
                // A data chunk cut short (a truncated file, or a streaming writer's placeholder
                // length) is an error: its length is the only way to know the file is whole.
                if len > available {
                    return Err(format!("truncated: the data chunk promises {len} bytes, the file holds {available}"));
                }
                data = Some(&bytes[body..body + len]);
            } else if id == b"fmt " {
                if len < 16 || len > available {
                    return Err(format!("truncated or malformed format chunk ({len} bytes, {available} in the file)"));
                }
                format = Some(parse_format(&bytes[body..body + len])?);
            }
            at = body.saturating_add(len).saturating_add(len & 1);
        }
        let (format, sample_rate) = format.ok_or("no format chunk ('fmt ') before the end of the file")?;
        let data = data.ok_or("no data chunk: the file holds no samples")?;
        let width = usize::from(format.bits / 8) * usize::from(format.channels);
        if data.len() % width != 0 {
            return Err(format!("truncated: the data chunk's {} bytes are not whole frames of {width} bytes", data.len()));
        }
        let mut samples = Vec::with_capacity(data.len() / width);
        for (i, frame) in data.chunks_exact(width).enumerate() {
            let mut sum = 0.0f64;
            for c in frame.chunks_exact(usize::from(format.bits / 8)) {
                sum += decode(c, format.float);
            }
            let v = sum / f64::from(format.channels);
            if !v.is_finite() {
                return Err(format!("sample {} is {v}: only finite samples are accepted", i + 1));
            }
            samples.push(v as f32);
        }
        Ok(Wav { sample_rate, samples, source: format })
    }

    /// Writes mono `samples` at `sample_rate` atomically (a temporary file renamed over `path`).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written; [`Error::InvalidConfig`] for a zero sample
    /// rate, a NaN or infinite sample, or more samples than a WAV file can hold.
    pub fn write(path: &Path, sample_rate: u32, samples: &[f32], encoding: WavEncoding) -> Result<()> {
        if sample_rate == 0 {
            return Err(Error::config("the sample rate must be positive"));
        }
        if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
            return Err(Error::config(format!("sample {} is {}: a WAV file holds finite samples only", i + 1, samples[i])));
        }
        let (tag, bits) = match encoding {
            WavEncoding::Pcm16 => (PCM, 16u16),
            WavEncoding::Float32 => (IEEE_FLOAT, 32u16),
        };
        let bytes_per = u32::from(bits / 8);
        let data_len = u32::try_from(samples.len()).ok().and_then(|n| n.checked_mul(bytes_per)).filter(|n| *n <= u32::MAX - 36);
        let data_len = data_len.ok_or_else(|| Error::config(format!("{} samples are more than a WAV file can hold", samples.len())))?;
        write_atomic(path, |w: &mut (dyn Write + Send)| -> Result<()> {
            let io = |e| Error::io(path, e);
            let mut header = Vec::with_capacity(44);
            header.extend_from_slice(b"RIFF");
            header.extend_from_slice(&(36 + data_len).to_le_bytes());
            header.extend_from_slice(b"WAVEfmt ");
            header.extend_from_slice(&16u32.to_le_bytes());
            header.extend_from_slice(&tag.to_le_bytes());
            header.extend_from_slice(&1u16.to_le_bytes());
            header.extend_from_slice(&sample_rate.to_le_bytes());
            header.extend_from_slice(&(sample_rate * bytes_per).to_le_bytes());
            header.extend_from_slice(&(bits / 8).to_le_bytes());
            header.extend_from_slice(&bits.to_le_bytes());
            header.extend_from_slice(b"data");
            header.extend_from_slice(&data_len.to_le_bytes());
            w.write_all(&header).map_err(io)?;
            let mut body = Vec::with_capacity(data_len as usize);
            for &v in samples {
                match encoding {
                    WavEncoding::Pcm16 => body.extend_from_slice(&((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()),
                    WavEncoding::Float32 => body.extend_from_slice(&v.to_le_bytes()),
                }
            }
            w.write_all(&body).map_err(io)
        })
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// The format chunk: the sample format and the sample rate.
fn parse_format(chunk: &[u8]) -> std::result::Result<(WavFormat, u32), String> {
    let u16_at = |i: usize| u16::from_le_bytes([chunk[i], chunk[i + 1]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes"));
    let bits = u16_at(14);
    if tag == EXTENSIBLE {
        if chunk.len() < 26 {
            return Err("malformed extensible format chunk (no sub-format)".into());
        }
        tag = u16_at(24);
    }
    let float = match (tag, bits) {
        (PCM, 8 | 16 | 24 | 32) => false,
        (IEEE_FLOAT, 32 | 64) => true,
        (PCM | IEEE_FLOAT, _) => {
            return Err(format!("{bits}-bit {} samples are not supported", if tag == PCM { "integer" } else { "float" }))
        }
        (6, _) => return Err("A-law samples are not supported (convert to 16-bit PCM)".into()),
        (7, _) => return Err("µ-law samples are not supported (convert to 16-bit PCM)".into()),
        _ => return Err(format!("compressed or unknown sample format (tag 0x{tag:04x}); convert to 16-bit PCM")),
    };
    if channels == 0 {
        return Err("the format chunk declares no channels".into());
    }
    if sample_rate == 0 {
        return Err("the format chunk declares a sample rate of 0".into());
    }
    Ok((WavFormat { channels, bits, float }, sample_rate))
}

/// One sample's value in `[-1, 1]` from its little-endian bytes.
fn decode(b: &[u8], float: bool) -> f64 {
    match (b.len(), float) {
        (1, _) => (f64::from(b[0]) - 128.0) / 128.0,
        (2, _) => f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
        (3, _) => f64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) / 8_388_608.0,
        (4, false) => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0,
        (4, true) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        (8, true) => f64::from_le_bytes(b.try_into().expect("8 bytes")),
        _ => unreachable!("parse_format admits these widths only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file's bytes with the given format tag, channels, bits and data.
    fn file(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels * bits / 8)).to_le_bytes());
        b.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        // A chunk the reader must skip, of odd length (padded).
        b.extend_from_slice(b"LIST");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&[1, 2, 3, 0]);
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn every_supported_format_reads_to_the_same_signal() {
        let want = [0.0f64, 0.5, -0.5, -1.0];
        let ints = |bits: u32| -> Vec<u8> {
            want.iter()
                .flat_map(|&v| {
                    let scaled = (v * f64::from(1u32 << (bits - 1))) as i64;
                    let le = scaled.to_le_bytes();
                    le[..(bits / 8) as usize].to_vec()
                })
                .collect()
        };
        let u8s: Vec<u8> = want.iter().map(|&v| (v * 128.0 + 128.0) as u8).collect();
        let f32s: Vec<u8> = want.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        let f64s: Vec<u8> = want.iter().flat_map(|&v| v.to_le_bytes()).collect();
        for (tag, bits, data) in
            [(PCM, 8, u8s), (PCM, 16, ints(16)), (PCM, 24, ints(24)), (PCM, 32, ints(32)), (IEEE_FLOAT, 32, f32s), (IEEE_FLOAT, 64, f64s)]
        {
            let wav = Wav::parse(&file(tag, 1, 16000, bits, &data)).unwrap();
            assert_eq!(wav.sample_rate, 16000);
            assert_eq!(wav.samples.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), want, "{bits}-bit tag {tag}");
        }
    }

    #[test]
    fn stereo_is_mixed_down_and_writing_round_trips() {
        let data: Vec<u8> = [16384i16, -16384, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()).collect();
        let wav = Wav::parse(&file(PCM, 2, 22050, 16, &data)).unwrap();
        assert_eq!(wav.samples, vec![0.0, 0.25]);
        assert_eq!(wav.source, WavFormat { channels: 2, bits: 16, float: false });
        let dir = std::env::temp_dir().join(format!("normflow-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let samples = [0.0f32, 0.5, -0.25, 1.0, -1.0, 0.123];
        for encoding in [WavEncoding::Pcm16, WavEncoding::Float32] {
            let path = dir.join("x.wav");
            Wav::write(&path, 16000, &samples, encoding).unwrap();
            let back = Wav::read(&path).unwrap();
            assert_eq!(back.sample_rate, 16000);
            let tolerance = if encoding == WavEncoding::Pcm16 { 1.0 / 32767.0 } else { 0.0 };
            for (a, b) in back.samples.iter().zip(&samples) {
                assert!((a - b).abs() <= tolerance, "{encoding:?}: {a} vs {b}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_and_unsupported_files_say_what_is_wrong() {
        let good = file(PCM, 1, 16000, 16, &[0, 0, 1, 0, 2, 0]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 3].to_vec(), "truncated"),
            (good[..30].to_vec(), "truncated or malformed format chunk"),
            (b"RIFF\0\0\0\0WAVE".to_vec(), "no format chunk"),
            (file(PCM, 1, 16000, 16, &[0, 0, 1]), "not whole frames"),
            (file(6, 1, 8000, 8, &[0, 1]), "A-law"),
            (file(PCM, 1, 16000, 12, &[0, 0]), "12-bit integer"),
            (file(PCM, 0, 16000, 16, &[]), "no channels"),
            (file(PCM, 1, 0, 16, &[0, 0]), "sample rate of 0"),
            (file(IEEE_FLOAT, 1, 16000, 32, &f32::NAN.to_le_bytes()), "sample 1 is NaN"),
            (b"not a wav file at all".to_vec(), "not a WAV file"),
            (Vec::new(), "not a WAV file"),
        ];
        for (bytes, says) in cases {
            let err = Wav::parse(&bytes).unwrap_err();
            assert!(err.contains(says), "expected {says:?} in {err:?}");
        }
        let mut no_data = good.clone();
        let at = no_data.windows(4).position(|w| w == b"data").unwrap();
        no_data[at..at + 4].copy_from_slice(b"junk");
        assert!(Wav::parse(&no_data).unwrap_err().contains("no data chunk"));
    }
}
