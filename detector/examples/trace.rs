//! Prints what the detector says at every point of one CSV, for looking into a series:
//! `cargo run --release -p omen-detector --example trace -- FILE.csv [CONFIG.json]`.

use std::path::Path;

use omen_detector::ingest::read_file;
use omen_detector::model::{SeriesDetector, SeriesDetectorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: trace FILE.csv [CONFIG.json]")?;
    let config: SeriesDetectorConfig = match args.get(2) {
        Some(config) => serde_json::from_str(&std::fs::read_to_string(config)?)?,
        None => SeriesDetectorConfig::default(),
    };
    let mut detector = SeriesDetector::new(config)?;
    println!("i,timestamp,value,expected,z,forest,shape,raw,likelihood,score");
    for series in read_file(Path::new(path), "trace")? {
        let points = series.timestamps_ms.iter().zip(&series.values);
        for (i, ((&t, &v), text)) in points.zip(series.timestamp_texts()).enumerate() {
            let s = detector.update(t, v);
            println!(
                "{i},{text},{v},{:.3},{:.3},{:.3},{:.3},{:.3},{:.4},{:.4}",
                s.expected, s.z, s.forest, s.shape, s.raw, s.likelihood, s.score
            );
        }
    }
    Ok(())
}
