//! The periodic archiver of `nagare serve --archive-every`: a background thread
//! that runs [`Engine::archive`] on the processes' `retention:` (never `--before`).
//! Stopping the server mid-run is safe: an archive run survives any crash (see
//! `nagare_engine::archive`), the next run finishes the cut-short chunk.

use nagare_engine::archive::ArchiveOptions;
use nagare_engine::Engine;
use std::path::PathBuf;
use std::time::Duration;

/// Start the thread: first run after `every`, then every `every`.
pub fn spawn(engine: Engine, dir: PathBuf, every: Duration, compact_over: Option<usize>) {
    let spawned = std::thread::Builder::new().name("nagare-archiver".into()).spawn(move || loop {
        std::thread::sleep(every);
        let opts = ArchiveOptions { compact_over, ..ArchiveOptions::new(dir.clone()) };
        match engine.archive(&opts) {
            Ok(r) if r.archived > 0 || r.compacted > 0 || r.recovered > 0 => tracing::info!(
                archived = r.archived,
                bytes = r.bytes,
                files = ?r.files,
                compacted = r.compacted,
                recovered = r.recovered,
                "archive run"
            ),
            Ok(_) => tracing::debug!("archive run: nothing to do"),
            Err(e) => tracing::error!(error = %e, "archive run failed; will try again"),
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the archiver thread; nothing is archived by this server");
    }
}
