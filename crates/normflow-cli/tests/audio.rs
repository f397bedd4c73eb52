//! `normflow audio`: WAV files to log-mel spectrograms, run as the real binary.

mod common;
use common::*;

use normflow::audio::{Wav, WavEncoding};
use normflow::data::read_npy;

#[test]
fn a_tone_peaks_in_its_band_and_bad_files_are_refused() {
    let t = TempDir::new("audio-mel");
    let wav = t.path("tone.wav");
    // One second of 1 kHz at 16 kHz: the log-mel peaks in the band around 1 kHz in every frame.
    let tone: Vec<f32> = (0..16000).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin()).collect();
    Wav::write(&wav, 16000, &tone, WavEncoding::Pcm16).unwrap();
    let out = t.path("mel.npy");
    ok(&["audio", "mel", s(&wav), "-o", s(&out)]);
    let mel = read_npy(&out).unwrap();
    assert_eq!((mel.rows(), mel.cols()), (1 + 16000 / 256, 80));
    let centre = normflow::audio::hz_to_mel(1000.0);
    let top = normflow::audio::hz_to_mel(8000.0);
    let band = (centre / top * 81.0).round() as usize - 1;
    for f in 4..mel.rows() - 4 {
        let row = &mel.as_slice()[f * 80..(f + 1) * 80];
        let peak = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!(peak.abs_diff(band) <= 1, "frame {f}: peak in band {peak}, 1 kHz is band {band}");
    }
    // CSV on stdout, with other settings.
    let csv = ok(&["audio", "mel", s(&wav), "--n-mels", "40", "--hop", "400", "--linear", "--power"]);
    assert_eq!(csv.lines().next().unwrap().split(',').count(), 40);
    assert_eq!(csv.lines().count(), 1 + 1 + 16000 / 400);

    // A truncated file, a text file, a missing file and a bad setting: clear errors naming them.
    let bytes = std::fs::read(&wav).unwrap();
    let cut = t.path("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(fails(&["audio", "mel", s(&cut)]).contains("cut.wav: truncated"));
    let text = t.path("notes.wav");
    std::fs::write(&text, "not audio").unwrap();
    assert!(fails(&["audio", "mel", s(&text)]).contains("notes.wav: not a WAV file"));
    assert!(fails(&["audio", "mel", s(&t.path("missing.wav"))]).contains("missing.wav"));
    assert!(fails(&["audio", "mel", s(&wav), "--fmax", "9000"]).contains("fmax"));
    assert!(!t.path("never.npy").exists());
    fails(&["audio", "mel", s(&cut), "-o", s(&t.path("never.npy"))]);
    assert!(!t.path("never.npy").exists(), "a failed run writes no output");
}

#[test]
fn a_small_vocoder_trains_and_resynthesises_and_bad_inputs_are_refused() {
    let t = TempDir::new("audio-vocoder");
    let dir = t.path("wavs");
    std::fs::create_dir_all(&dir).unwrap();
    // Three short "recordings": tones of different pitch with a little noise.
    write_tones(&dir, &[220.0, 330.0, 440.0], 8000, 3);
    let model = t.path("voc.safetensors");
    let args = [
        "audio",
        "train",
        s(&dir),
        "--segment",
        "512",
        "--flows",
        "2",
        "--channels",
        "8",
        "--layers",
        "2",
        "--epochs",
        "3",
        "-q",
        "-o",
        s(&model),
    ];
    ok(&args);
    let out = t.path("out.wav");
    let input = dir.join("take1.wav");
    ok(&["audio", "vocode", s(&model), s(&input), "-o", s(&out)]);
    let (original, back) = (Wav::read(&input).unwrap(), Wav::read(&out).unwrap());
    assert_eq!((back.sample_rate, back.samples.len()), (16000, original.samples.len()));
    assert!(back.samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    assert!(back.samples.iter().any(|&v| v != 0.0));

    // Spectrograms side by side; synthesis from a mel file; scores on the training files.
    let png = t.path("spec.png");
    ok(&["audio", "vocode", s(&model), s(&input), "-o", s(&out), "--png", s(&png)]);
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let mel = t.path("mel.npy");
    ok(&["audio", "mel", s(&input), "-o", s(&mel)]);
    let synth = t.path("synth.wav");
    ok(&["audio", "synth", s(&model), s(&mel), "-o", s(&synth), "--temperature", "0.5", "--png", s(&t.path("synth.png"))]);
    let made = Wav::read(&synth).unwrap();
    // 32 frames of hop 256 are 31 hops of samples; every sample finite and within full scale.
    assert_eq!((made.sample_rate, made.samples.len()), (16000, (8000 / 256) * 256));
    assert!(made.samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0) && made.samples.iter().any(|&v| v != 0.0));
    let narrow = t.path("mel40.npy");
    ok(&["audio", "mel", s(&input), "--n-mels", "40", "-o", s(&narrow)]);
    let e = fails(&["audio", "synth", s(&model), s(&narrow), "-o", s(&t.path("never.wav"))]);
    assert!(e.contains("mel40.npy") && e.contains("40 bands") && e.contains("takes 80"), "{e}");
    assert!(!t.path("never.wav").exists());
    let report: serde_json::Value = serde_json::from_str(&ok(&["audio", "eval", s(&model), s(&dir), "--json"])).unwrap();
    assert_eq!(report["files"], 3);
    assert_eq!(report["segments"], 3 * (8000 / 512));
    for key in ["nll_per_sample", "log_mel_l1", "mcd_db", "real_time_factor"] {
        assert!(report[key].as_f64().is_some_and(f64::is_finite), "{key}: {report}");
    }
    assert!(report["log_mel_l1"].as_f64().unwrap() > 0.0 && report["per_file"].as_array().unwrap().len() == 3);
    let table = ok(&["audio", "eval", s(&model), s(&input)]);
    assert!(table.contains("take1.wav") && table.contains("all 1 files"), "{table}");

    // Another sample rate among the files: resampled to the vocoder's, for training and for
    // vocoding (whose output keeps the input's rate and length).
    let odd_tone: Vec<f32> = (0..11025).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 300.0 * i as f32 / 22050.0).sin()).collect();
    Wav::write(&dir.join("odd.wav"), 22050, &odd_tone, WavEncoding::Pcm16).unwrap();
    let mixed = t.path("mixed.safetensors");
    ok(&[
        "audio",
        "train",
        s(&dir),
        "--sample-rate",
        "16000",
        "--segment",
        "512",
        "--flows",
        "2",
        "--channels",
        "8",
        "--layers",
        "2",
        "--epochs",
        "1",
        "-q",
        "-o",
        s(&mixed),
    ]);
    let odd_out = t.path("odd-out.wav");
    ok(&["audio", "vocode", s(&mixed), s(&dir.join("odd.wav")), "-o", s(&odd_out)]);
    let back = Wav::read(&odd_out).unwrap();
    assert_eq!(back.sample_rate, 22050);
    assert!((back.samples.len() as i64 - 11025).abs() <= 2, "{} samples", back.samples.len());
    assert!(back.samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    let report: serde_json::Value = serde_json::from_str(&ok(&["audio", "eval", s(&mixed), s(&dir.join("odd.wav")), "--json"])).unwrap();
    assert!(report["log_mel_l1"].as_f64().is_some_and(f64::is_finite), "{report}");
    assert!(fails(&["audio", "train", s(&dir), "--sample-rate", "0", "-o", s(&t.path("never.safetensors"))]).contains("--sample-rate"));
    // An empty folder, a model that is not a vocoder.
    let empty = t.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(fails(&["audio", "train", s(&empty), "-o", s(&t.path("never.safetensors"))]).contains("no .wav files"));
    assert!(!t.path("never.safetensors").exists());
    let data = t.path("data.csv");
    write_data(&data, 300, 1);
    let tabular = t.path("tabular.safetensors");
    ok(&["train", s(&data), "--epochs", "1", "-q", "-o", s(&tabular)]);
    assert!(fails(&["audio", "vocode", s(&tabular), s(&input), "-o", s(&out)]).contains("not a vocoder"));
}

#[test]
fn audio_train_with_early_outputs_checkpoints_and_resumes_where_it_stopped() {
    let t = TempDir::new("audio-resume");
    let dir = t.path("wavs");
    std::fs::create_dir_all(&dir).unwrap();
    write_tones(&dir, &[200.0, 310.0], 8192, 5);
    let model = t.path("voc.safetensors");
    // Five flows: the fifth works on 6 of the 8 channels (2 left after the fourth).
    let run = |channels: &str, epochs: &str, extra: &[&str]| {
        let mut args = vec!["audio", "train", s(&dir), "--segment", "512", "--flows", "5", "--channels", channels, "--layers", "2"];
        args.extend(["--epochs", epochs, "-o", s(&model)]);
        args.extend(extra);
        normflow(&args)
    };
    let train = |epochs: &str, extra: &[&str]| {
        let out = run("8", epochs, extra);
        assert!(out.status.success(), "audio train failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    };
    let steps = |stderr: &str| -> usize {
        let at = stderr.find(" steps (").unwrap_or_else(|| panic!("no step count in {stderr}"));
        stderr[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let err = fails(&["audio", "train", s(&dir), "--resume", "-o", s(&model)]);
    assert!(err.contains("no checkpoint at") && err.contains("voc.checkpoint.safetensors"), "{err}");
    let first = steps(&train("2", &[]));
    let checkpoint = t.path("voc.checkpoint.safetensors");
    ok(&["info", s(&checkpoint)]);
    let resumed = steps(&train("4", &["--resume"]));
    assert_eq!(resumed, 2 * first, "the resumed run goes on to 4 epochs from the checkpoint's 2");
    // The resumed model is still a vocoder (its mel settings travelled through the checkpoint).
    let out = t.path("out.wav");
    ok(&["audio", "vocode", s(&model), s(&dir.join("take0.wav")), "-o", s(&out)]);
    assert!(Wav::read(&out).unwrap().samples.iter().all(|v| v.is_finite()));
    let refused = run("16", "4", &["--resume"]);
    assert!(!refused.status.success(), "a checkpoint of another architecture is refused");
    let err = String::from_utf8(refused.stderr).unwrap();
    assert!(err.contains("another vocoder architecture"), "{err}");
    let err = fails(&["audio", "train", s(&dir), "--flows", "12", "--early-every", "2", "-o", s(&t.path("never.safetensors"))]);
    assert!(err.contains("early outputs"), "{err}");
}

/// `take{k}.wav` in `dir` for each pitch: `samples` samples at 16 kHz of a tone with a little
/// noise (seeded).
fn write_tones(dir: &std::path::Path, pitches: &[f32], samples: usize, seed: u64) {
    let mut rng = normflow::Rng::new(seed);
    for (k, hz) in pitches.iter().enumerate() {
        let x: Vec<f32> =
            (0..samples).map(|i| 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / 16000.0).sin() + 0.01 * rng.normal() as f32).collect();
        Wav::write(&dir.join(format!("take{k}.wav")), 16000, &x, WavEncoding::Pcm16).unwrap();
    }
}
