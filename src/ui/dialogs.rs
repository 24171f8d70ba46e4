//! File dialogs behind a trait: the app uses native dialogs (rfd); tests script the answers,
//! since headless dialogs return nothing.

use std::path::PathBuf;
use std::sync::Mutex;

pub trait FileDialogs {
    fn pick_model_folder(&self) -> Option<PathBuf>;
    fn pick_model_file(&self) -> Option<PathBuf>;
    fn pick_image(&self) -> Option<PathBuf>;
}

/// Native dialogs through rfd.
pub struct NativeDialogs;

impl FileDialogs for NativeDialogs {
    fn pick_model_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Open a model folder").pick_folder()
    }
    fn pick_model_file(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a model weights file")
            .add_filter("Weights", &["safetensors", "bin", "pth", "pt"])
            .pick_file()
    }
    fn pick_image(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open an image")
            .add_filter("Images", &["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"])
            .pick_file()
    }
}

/// Dialogs whose answers a test sets in advance; each answer is used once.
#[derive(Default)]
pub struct ScriptedDialogs {
    pub folder: Mutex<Option<PathBuf>>,
    pub file: Mutex<Option<PathBuf>>,
    pub image: Mutex<Option<PathBuf>>,
}

impl FileDialogs for ScriptedDialogs {
    fn pick_model_folder(&self) -> Option<PathBuf> {
        self.folder.lock().ok()?.take()
    }
    fn pick_model_file(&self) -> Option<PathBuf> {
        self.file.lock().ok()?.take()
    }
    fn pick_image(&self) -> Option<PathBuf> {
        self.image.lock().ok()?.take()
    }
}

impl<T: FileDialogs> FileDialogs for std::sync::Arc<T> {
    fn pick_model_folder(&self) -> Option<PathBuf> {
        self.as_ref().pick_model_folder()
    }
    fn pick_model_file(&self) -> Option<PathBuf> {
        self.as_ref().pick_model_file()
    }
    fn pick_image(&self) -> Option<PathBuf> {
        self.as_ref().pick_image()
    }
}
