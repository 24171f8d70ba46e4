//! Lists the demo replay data set (assets/digits/test) for `include_bytes!`, so an installed
//! `modeldeck` can replay traffic without the repository (see src/source/embedded.rs).

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("assets/digits/test");
    println!("cargo:rerun-if-changed=assets/digits/test");
    let mut files = Vec::new();
    let Ok(classes) = std::fs::read_dir(&data) else {
        panic!("{} is missing: it is part of the repository", data.display());
    };
    for class in classes.flatten() {
        println!("cargo:rerun-if-changed={}", class.path().display());
        if let Ok(entries) = std::fs::read_dir(class.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "png") {
                    let name =
                        format!("{}/{}", class.file_name().to_string_lossy(), entry.file_name().to_string_lossy());
                    files.push((name, path));
                }
            }
        }
    }
    files.sort();
    let mut out = String::from("&[\n");
    for (name, path) in &files {
        out.push_str(&format!("    embed_abs!({name:?}, {:?}),\n", path.display().to_string()));
    }
    out.push_str("]\n");
    let Some(out_dir) = std::env::var_os("OUT_DIR") else { panic!("cargo sets OUT_DIR") };
    if let Err(e) = std::fs::write(Path::new(&out_dir).join("digits_test.rs"), out) {
        panic!("cannot write digits_test.rs: {e}");
    }
}
