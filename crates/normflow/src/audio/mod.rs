//! Audio: WAV files, and the mel spectrograms a vocoder is conditioned on.
//!
//! ```no_run
//! use normflow::audio::{MelConfig, MelSpectrogram, Wav};
//!
//! let wav = Wav::read("speech.wav".as_ref())?;
//! let mel = MelSpectrogram::new(MelConfig::vocoder(wav.sample_rate))?;
//! let log_mel = mel.log_mel(&wav.samples)?; // one row of 80 bands per 256 samples
//! # Ok::<(), normflow::Error>(())
//! ```

mod dequantize;
mod mel;
mod metrics;
mod resample;
mod segments;
mod stft;
mod wav;

pub use dequantize::{dequantize, quantum};
pub use mel::{hz_to_mel, mel_filters, mel_to_hz, MelConfig, MelSpectrogram, LOG_FLOOR};
pub use metrics::{log_mel_l1, mel_cepstral_distortion, CEPSTRA};
pub use resample::resample;
pub use segments::{frames_per_segment, overlap_add, segment_context, training_segments};
pub use wav::{Wav, WavEncoding, WavFormat};
