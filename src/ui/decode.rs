//! The one way an image gets into the app: opened, dropped, pasted or from the gallery, every
//! image is decoded (or converted, for the clipboard) on a small fixed pool of worker threads,
//! checked against the same limits ([`crate::model::image::check_dimensions`]), and given a
//! downscaled preview, so the UI thread never touches full-size pixels and the renderer never
//! receives a texture wider than it can take.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use image::RgbImage;

use crate::model::image::{check_dimensions, decode_image_bytes, decode_image_file};

/// Longest side of an input preview: well under any GPU's maximum texture side.
pub const PREVIEW_SIDE: u32 = 1024;
/// Longest side of a gallery thumbnail (shown at 56 points, sharp at 2x).
pub const THUMBNAIL_SIDE: u32 = 112;
/// Images waiting to be decoded at most; more at once are refused with a message.
pub const QUEUE_CAPACITY: usize = 64;

/// Where an image comes from.
pub enum ImageSource {
    File(PathBuf),
    Embedded {
        name: String,
        bytes: &'static [u8],
    },
    Pasted(Arc<egui::ColorImage>),
    /// The Playground's drawing canvas, already rasterised.
    Drawn(Arc<RgbImage>),
}

impl ImageSource {
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => {
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
            Self::Embedded { name, .. } => name.clone(),
            Self::Pasted(_) => "pasted image".into(),
            Self::Drawn(_) => "drawing".into(),
        }
    }
}

/// What the decoded image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The Playground's current input.
    Input,
    Gallery,
}

/// A decoded image: full size for the model, small for the screen.
pub struct DecodedImage {
    pub name: String,
    pub purpose: Purpose,
    pub image: Arc<RgbImage>,
    pub preview: egui::ColorImage,
}

type Job = (ImageSource, Purpose);
type Outcome = Result<DecodedImage, String>;

pub struct DecodePool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Outcome>,
    /// Why no worker runs, when none could be started.
    unavailable: Option<String>,
}

impl DecodePool {
    /// Starts `workers` threads; `wake` is called after each image (e.g. a repaint request).
    pub fn new(workers: usize, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(QUEUE_CAPACITY);
        let (result_tx, results) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let mut started = 0;
        let mut last_error = None;
        for i in 0..workers.max(1) {
            let (jobs, results, wake) = (job_rx.clone(), result_tx.clone(), wake.clone());
            match std::thread::Builder::new()
                .name(format!("modeldeck-decode-{i}"))
                .spawn(move || decode_loop(&jobs, &results, wake.as_ref()))
            {
                Ok(_) => started += 1,
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        let unavailable = (started == 0)
            .then(|| format!("cannot start the image decoder: {}", last_error.unwrap_or_else(|| "no thread".into())));
        Self { jobs: (started > 0).then_some(job_tx), results, unavailable }
    }

    /// Queues an image; refuses when the queue is full or no worker runs.
    pub fn submit(&self, source: ImageSource, purpose: Purpose) -> Result<(), String> {
        let name = source.name();
        let Some(jobs) = &self.jobs else {
            return Err(self.unavailable.clone().unwrap_or_else(|| "the image decoder is not running".into()));
        };
        match jobs.try_send((source, purpose)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(format!("{name} was not opened: {QUEUE_CAPACITY} images are already waiting to be decoded"))
            }
            Err(TrySendError::Disconnected(_)) => Err("the image decoder stopped".into()),
        }
    }

    /// Images (or errors) finished since the last call.
    pub fn poll(&self) -> Vec<Outcome> {
        self.results.try_iter().collect()
    }
}

fn decode_loop(jobs: &Mutex<Receiver<Job>>, results: &Sender<Outcome>, wake: &(dyn Fn() + Send + Sync)) {
    loop {
        // Hold the lock only while taking a job, so the other workers decode meanwhile.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((source, purpose)) = job else { return };
        let name = source.name();
        let outcome = decode(&source).map(|image| {
            let side = if purpose == Purpose::Gallery { THUMBNAIL_SIDE } else { PREVIEW_SIDE };
            let preview = preview(&image, side);
            DecodedImage { name, purpose, image: Arc::new(image), preview }
        });
        if results.send(outcome).is_err() {
            return;
        }
        wake();
    }
}

/// Full-size RGB pixels, under the same limits and errors for every origin.
pub fn decode(source: &ImageSource) -> Result<RgbImage, String> {
    match source {
        ImageSource::File(path) => decode_image_file(path).map_err(|e| e.to_string()),
        ImageSource::Embedded { name, bytes } => decode_image_bytes(bytes, Path::new(name)).map_err(|e| e.to_string()),
        ImageSource::Pasted(image) => rgb_from_clipboard(image),
        ImageSource::Drawn(image) => Ok(image.as_ref().clone()),
    }
}

/// A clipboard image (egui's premultiplied RGBA) as RGB; alpha is dropped as PIL's
/// `convert("RGB")` does.
fn rgb_from_clipboard(image: &egui::ColorImage) -> Result<RgbImage, String> {
    let name = Path::new("pasted image");
    let [w, h] = image.size;
    check_dimensions(w as u64, h as u64, name).map_err(|e| e.to_string())?;
    if image.pixels.len() != w * h {
        return Err(format!(
            "the pasted image is damaged: it declares {w}x{h} pixels but holds {} (copy it again)",
            image.pixels.len()
        ));
    }
    let mut raw = Vec::with_capacity(w * h * 3);
    for c in &image.pixels {
        let [r, g, b, _] = c.to_srgba_unmultiplied();
        raw.extend_from_slice(&[r, g, b]);
    }
    RgbImage::from_raw(w as u32, h as u32, raw).ok_or_else(|| "the pasted image has an impossible size".into())
}

/// The image scaled down (never up) so its longer side is at most `side`, as egui pixels.
pub fn preview(image: &RgbImage, side: u32) -> egui::ColorImage {
    let (w, h) = image.dimensions();
    let small = if w.max(h) > side {
        let scale = side as f64 / w.max(h) as f64;
        let (pw, ph) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
        image::imageops::thumbnail(image, pw, ph)
    } else {
        image.clone()
    };
    egui::ColorImage::from_rgb([small.width() as usize, small.height() as usize], small.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_fit_the_texture_limit_whatever_the_shape() {
        for (w, h) in [(20_000, 200), (200, 20_000), (1, 1), (3000, 2000), (50, 40)] {
            let p = preview(&RgbImage::new(w, h), PREVIEW_SIDE);
            let [pw, ph] = p.size;
            assert!(pw.max(ph) <= PREVIEW_SIDE as usize && pw >= 1 && ph >= 1, "{w}x{h} -> {pw}x{ph}");
            if w.max(h) <= PREVIEW_SIDE {
                assert_eq!([pw, ph], [w as usize, h as usize], "small images keep their size");
            }
        }
    }

    #[test]
    fn clipboard_images_meet_the_same_limits() {
        let huge = egui::ColorImage { size: [12_000, 12_000], pixels: Vec::new(), source_size: egui::Vec2::ZERO };
        assert!(rgb_from_clipboard(&huge).unwrap_err().contains("megapixel limit"));
        let damaged =
            egui::ColorImage { size: [10, 10], pixels: vec![egui::Color32::RED; 7], source_size: egui::Vec2::ZERO };
        assert!(rgb_from_clipboard(&damaged).unwrap_err().contains("damaged"));
        let empty = egui::ColorImage { size: [0, 5], pixels: Vec::new(), source_size: egui::Vec2::ZERO };
        assert!(rgb_from_clipboard(&empty).unwrap_err().contains("no pixels"));
        let ok = egui::ColorImage::new([2, 1], vec![egui::Color32::from_rgb(10, 20, 30); 2]);
        assert_eq!(rgb_from_clipboard(&ok).unwrap().get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn a_full_queue_refuses_with_a_message_instead_of_growing() {
        let pool = DecodePool::new(1, || {});
        let image = Arc::new(egui::ColorImage::new([400, 400], vec![egui::Color32::BLACK; 160_000]));
        let mut refused = None;
        for i in 0..QUEUE_CAPACITY * 4 {
            if let Err(e) = pool.submit(ImageSource::Pasted(image.clone()), Purpose::Input) {
                refused = Some((i, e));
                break;
            }
        }
        // Converting an image takes far longer than queueing one, so the queue fills first.
        let (i, e) = refused.expect("the queue is bounded");
        assert!(i >= QUEUE_CAPACITY && e.contains("waiting to be decoded"), "{i}: {e}");
    }
}
