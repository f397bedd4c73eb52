//! Flags of the `image` commands: Glow and multiscale RealNVP on image sets.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// The `image` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Train a Glow on 8-bit images (an IDX file, plain or gzip) and save the model.
    #[command(
        after_help = "Example:\n  normflow image train train-images-idx3-ubyte.gz --levels 2 --steps 4 --hidden 64 --minutes 10 -o glow.safetensors"
    )]
    Train(ImageTrainArgs),
    /// Test bits per dimension of a model on images (an IDX file).
    #[command(after_help = "Example:\n  normflow image eval glow.safetensors t10k-images-idx3-ubyte.gz --json")]
    Eval(ImageEvalArgs),
    /// Sample images into a PNG grid (or an .npy array of rows).
    #[command(after_help = "Example:\n  normflow image sample glow.safetensors -n 64 --temperature 0.7 -o grid.png")]
    Sample(ImageSampleArgs),
    /// Map images to their latent codes (one row per image, .npy or .csv).
    #[command(after_help = "Example:\n  normflow image encode glow.safetensors t10k-images-idx3-ubyte.gz -o latents.npy")]
    Encode(ImageEncodeArgs),
    /// Map latent codes back to images (a PNG grid, or .npy rows of pixel values).
    #[command(after_help = "Example:\n  normflow image decode glow.safetensors latents.npy -o decoded.png")]
    Decode(ImageDecodeArgs),
    /// A grid of images interpolated through the latent space between pairs of images.
    #[command(
        after_help = "Example:\n  normflow image interpolate glow.safetensors t10k-images-idx3-ubyte.gz --pairs 0:1,2:3 --steps 8 -o interp.png"
    )]
    Interpolate(ImageInterpolateArgs),
}

/// Flags of `image encode`.
#[derive(Args, Debug)]
pub struct ImageEncodeArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Output: .npy or .csv, one latent row per image.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image decode`.
#[derive(Args, Debug)]
pub struct ImageDecodeArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Latent rows (.npy or .csv), as `image encode` writes them.
    pub latents: PathBuf,
    /// Output: a .png grid, or .npy/.csv rows of pixel values.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image interpolate`.
#[derive(Args, Debug)]
pub struct ImageInterpolateArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Pairs of image indices (0-based) to interpolate between, one grid row each.
    #[arg(long, value_delimiter = ',', default_value = "0:1,2:3,4:5,6:7")]
    pub pairs: Vec<String>,
    /// Images per row, both ends included.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Output: a .png grid.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image train`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ImageTrainArgs {
    /// Training images: an IDX file (plain or gzip), an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Where to save the model.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Image flow architecture.
    #[arg(long, value_enum, default_value_t = ImageFlowKind::Glow)]
    pub flow: ImageFlowKind,
    /// Levels. Glow squeezes at every level (height and width must divide by 2^levels);
    /// RealNVP at every level but the last (2^(levels-1)).
    #[arg(long, default_value_t = 2)]
    pub levels: usize,
    /// Steps per level: Glow's ActNorm, 1×1 convolution and coupling; RealNVP's checkerboard
    /// couplings (and as many channel couplings after each squeeze).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Hidden channels of the coupling networks.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Residual blocks of each RealNVP coupling network (default 2; 0: Glow's 3×3 → 1×1 → 3×3).
    #[arg(long)]
    pub residual_blocks: Option<usize>,
    /// Logit preprocessing with this squeeze α (RealNVP's: pixels to logit(α + (1 − 2α)·v/256))
    /// instead of Glow's scaling to v/256 − 0.5.
    #[arg(long)]
    pub logit: Option<f32>,
    /// Additive instead of affine couplings.
    #[arg(long)]
    pub additive: bool,
    /// Checkpoints and resuming.
    #[command(flatten)]
    pub checkpoint: super::CheckpointArgs,
    /// Class labels of the training images (an IDX label file or a 1-D .npy of integers
    /// 0..=999, one per image): the flow learns p(image | class), and `image sample --class`
    /// draws from one class.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Cosine learning-rate decay to zero over the run (over --minutes when the time limit
    /// comes before the step and epoch limits).
    #[arg(long)]
    pub cosine: bool,
    /// Training time limit in minutes (the best validation weights are kept).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// Maximum number of optimisation steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Evaluate the validation images every this many steps.
    #[arg(long, default_value_t = 200)]
    pub eval_every: usize,
    /// Fraction of images held out for validation.
    #[arg(long, default_value_t = 0.02)]
    pub val_frac: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object with the training summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags of `image eval`.
#[derive(Args, Debug)]
pub struct ImageEvalArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files, of the model's image size.
    pub data: PathBuf,
    /// Class labels of the images, for a class-conditional model (as for `image train`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `image sample`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ImageSampleArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub num: usize,
    /// Temperature: the base draws are scaled by it (below 1: smoother, more typical images).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Output: a .png grid, or .npy rows of pixel values.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The class to draw from, for a class-conditional model (default: image i of class
    /// i mod classes, so a grid shows every class).
    #[arg(long)]
    pub class: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Image flow architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImageFlowKind {
    /// Glow: ActNorm, invertible 1×1 convolutions and channel couplings, split priors.
    Glow,
    /// Multiscale RealNVP: checkerboard and channel couplings, half the channels factored out
    /// per level.
    Realnvp,
}
