//! The mel front end against librosa's `melspectrogram` (reference values made by
//! `bench/audio/librosa_reference.py`, committed in `tests/data/librosa_mel.json`).

use normflow::audio::{MelConfig, MelSpectrogram};
use serde_json::Value;

#[test]
fn mel_spectrograms_match_librosa_to_1e_4_relative() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/librosa_mel.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let signal: Vec<f32> = reference["signal"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let config: MelConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let mel = MelSpectrogram::new(config.clone()).unwrap();
        for (key, ours) in [("mel", mel.mel(&signal).unwrap()), ("log_mel", mel.log_mel(&signal).unwrap())] {
            let want = case[key].as_array().unwrap();
            assert_eq!(ours.rows(), want.len(), "{config:?}: frames");
            let mut worst = 0.0f64;
            for (f, row) in want.iter().enumerate() {
                let row = row.as_array().unwrap();
                assert_eq!(ours.cols(), row.len(), "{config:?}: bands");
                for (m, w) in row.iter().enumerate() {
                    let (a, b) = (f64::from(ours.get(f, m)), w.as_f64().unwrap());
                    // On the log scale a difference is the relative difference of the mel values.
                    let relative = if key == "log_mel" { (a - b).abs() } else { (a - b).abs() / b.abs().max(1e-12) };
                    assert!(relative <= 1e-4, "{config:?} {key}: frame {f}, band {m}: {a} vs librosa's {b}");
                    worst = worst.max(relative);
                }
            }
            eprintln!(
                "{key} at {} Hz, n_fft {}, power {}: worst relative difference {worst:.2e}",
                config.sample_rate, config.n_fft, config.power
            );
        }
    }
}
