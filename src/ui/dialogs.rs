//! File dialogs behind a trait, always called off the UI thread: the app runs each dialog on a
//! thread of its own and picks up the answer in a later frame, so the window keeps repainting
//! while a dialog is open. The app uses native dialogs (rfd's asynchronous ones, which may be
//! waited on from any thread, including on macOS); tests pass their own implementation.

use std::path::PathBuf;

/// Which dialog to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    ModelFolder,
    ModelFile,
    Image,
}

/// Shows a dialog and blocks the calling (background) thread until the user answers.
pub trait FileDialogs: Send + Sync {
    fn pick(&self, kind: DialogKind) -> Option<PathBuf>;
}

/// Native dialogs through rfd.
pub struct NativeDialogs;

impl FileDialogs for NativeDialogs {
    fn pick(&self, kind: DialogKind) -> Option<PathBuf> {
        let dialog = rfd::AsyncFileDialog::new();
        let picked = match kind {
            DialogKind::ModelFolder => pollster::block_on(dialog.set_title("Open a model folder").pick_folder()),
            DialogKind::ModelFile => pollster::block_on(
                dialog
                    .set_title("Open a model weights file")
                    .add_filter("Weights", &["safetensors", "bin", "pth", "pt"])
                    .pick_file(),
            ),
            DialogKind::Image => pollster::block_on(
                dialog
                    .set_title("Open an image")
                    .add_filter("Images", &["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"])
                    .pick_file(),
            ),
        };
        picked.map(|handle| handle.path().to_path_buf())
    }
}
