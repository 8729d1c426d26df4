//! Ingest: reads history into [`Series`] from files.
//!
//! Formats: `timestamp,value` CSV (NAB's layout), a Prometheus `query_range` JSON
//! response, and Prometheus text exposition with timestamps. A directory is searched
//! recursively; each series is named by its path relative to the root (without `.csv`),
//! so NAB's `<category>/<file>` names survive into the results.

mod csv;
mod error;
mod prometheus;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::series::Series;

pub use self::csv::read_csv;
pub use self::error::IngestError;
pub use self::prometheus::{read_query_range, read_text_exposition};

fn read_to_string(path: &Path) -> Result<String, IngestError> {
    std::fs::read_to_string(path).map_err(|source| IngestError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Adds the history files under `dir`, whose canonical path is not in `visited` yet; a
/// directory reached again (through a symbolic link back up the tree) is skipped.
fn collect_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), IngestError> {
    let io_error = |source| IngestError::Io {
        path: dir.to_owned(),
        source,
    };
    if !visited.insert(std::fs::canonicalize(dir).map_err(io_error)?) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(io_error)?;
    for entry in entries {
        let path = entry.map_err(io_error)?.path();
        if path.is_dir() {
            collect_files(&path, files, visited)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("csv" | "json" | "prom" | "txt")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads one file, choosing the format from its content: `{` starts a `query_range`
/// response, a line of `name value timestamp` is text exposition, anything else is CSV.
/// `name` names the series (CSV) or prefixes the series found in the file.
pub fn read_file(path: &Path, name: &str) -> Result<Vec<Series>, IngestError> {
    let text = read_to_string(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text); // a byte-order mark
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .unwrap_or("");
    // A sample line starts with its selector: a name, then any labels in braces (their
    // commas are not CSV's), then the value. A CSV row has its first comma before any brace.
    let selector_first = match (first_line.find('{'), first_line.find(',')) {
        (_, None) => true,
        (Some(brace), Some(comma)) => brace < comma,
        (None, Some(_)) => false,
    };
    if text.trim_start().starts_with('{') {
        read_query_range(text, path, name)
    } else if selector_first && first_line.split_whitespace().count() >= 2 {
        read_text_exposition(text, path, name)
    } else {
        read_csv(text, path, name).map(|series| vec![series])
    }
}

/// The history files under a path, in a stable (sorted) order, each with the name its
/// series take: the path relative to the directory (for a single file: relative to its
/// folder's parent), without extension.
#[derive(Debug, Clone)]
pub struct HistoryFiles {
    path: PathBuf,
    files: Vec<(PathBuf, String)>,
}

impl HistoryFiles {
    /// Lists a file, or every supported file under a directory.
    pub fn find(path: &Path) -> Result<Self, IngestError> {
        let mut files = Vec::new();
        let root = if path.is_dir() {
            collect_files(path, &mut files, &mut HashSet::new())?;
            path.to_owned()
        } else {
            // A single file keeps its folder in its name, as in NAB's `<category>/<file>`,
            // so label files keyed that way still apply.
            files.push(path.to_owned());
            path.parent()
                .and_then(Path::parent)
                .map(Path::to_owned)
                .unwrap_or_default()
        };
        files.sort();
        let files: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|file| {
                let relative = file.strip_prefix(&root).unwrap_or(&file).with_extension("");
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                (file, name)
            })
            .collect();
        // Refused before anything is read, so a backtest does not stop half-way.
        let mut first_with: HashMap<&str, &Path> = HashMap::new();
        for (file, name) in &files {
            if let Some(first) = first_with.insert(name, file) {
                return Err(IngestError::SameName {
                    name: name.clone(),
                    first: first.to_owned(),
                    second: file.clone(),
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            files,
        })
    }

    /// The name of each file's series (or, for a file of several, their prefix).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(_, name)| name.as_str())
    }

    /// How many files there are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads the files one after the other, handing each series to `each` with the number
    /// of files read so far, so only one file's text is held at a time. Stops at the first
    /// error, `each`'s own included; finding no series at all, or one series twice in a
    /// file, is an error.
    pub fn read_each<E: From<IngestError>>(
        &self,
        mut each: impl FnMut(Series, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        // By series name, the file it came from. Names can still meet across files (a
        // `query_range` response `a.json` holds series `a/<selector>`, as does a CSV file
        // `a/<selector>.csv`).
        let mut sources: HashMap<String, usize> = HashMap::new();
        for (index, (file, name)) in self.files.iter().enumerate() {
            for series in read_file(file, name)? {
                if let Some(&first) = sources.get(&series.name) {
                    return Err(if first == index {
                        IngestError::Repeated {
                            path: file.clone(),
                            name: series.name,
                        }
                    } else {
                        IngestError::SameName {
                            name: series.name,
                            first: self.files[first].0.clone(),
                            second: file.clone(),
                        }
                    }
                    .into());
                }
                sources.insert(series.name.clone(), index);
                each(series, index + 1)?;
            }
        }
        if sources.is_empty() {
            return Err(IngestError::Empty {
                path: self.path.clone(),
            }
            .into());
        }
        Ok(())
    }
}

/// Reads a file or every supported file under a directory (see [`HistoryFiles`]).
pub fn read_path(path: &Path) -> Result<Vec<Series>, IngestError> {
    let mut series = Vec::new();
    HistoryFiles::find(path)?.read_each(|one, _| {
        series.push(one);
        Ok::<(), IngestError>(())
    })?;
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_directory_tree_with_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cat")).unwrap();
        std::fs::write(
            dir.path().join("cat/a.csv"),
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2.5\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.prom"),
            "# TYPE up gauge\nup{job=\"x\"} 1 1000\nup{job=\"x\"} 0 2000\n",
        )
        .unwrap();
        let series = read_path(dir.path()).unwrap();
        let names: Vec<_> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b/up{job=\"x\"}", "cat/a"]);
        assert_eq!(series[1].values, [1.0, 2.5]);
        assert_eq!(series[0].timestamps_ms, [1000, 2000]);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_back_up_the_tree_is_followed_once() {
        // cat/up -> .. and cat/self -> ../cat: without care, every path through the two
        // links names the same file again (and there are exponentially many).
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cat")).unwrap();
        std::fs::write(dir.path().join("cat/a.csv"), "2014-01-01 00:00:00,1\n").unwrap();
        symlink("..", dir.path().join("cat/up")).unwrap();
        symlink("../cat", dir.path().join("cat/self")).unwrap();
        let files = HistoryFiles::find(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let names: Vec<_> = read_path(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["cat/a"]);
    }

    #[test]
    fn exposition_lines_with_several_labels_are_not_csv() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.prom");
        std::fs::write(
            &file,
            "up{job=\"a\",instance=\"b\"} 1 1000\nup{job=\"a\",instance=\"b\"} 0 2000\n",
        )
        .unwrap();
        let series = read_file(&file, "m").unwrap();
        assert_eq!(series[0].name, "m/up{instance=\"b\",job=\"a\"}");
        assert_eq!(series[0].values, [1.0, 0.0]);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_any_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.prom");
        std::fs::write(
            &file,
            "\u{feff}up{job=\"a\"} 1 1000\nup{job=\"a\"} 0 2000\n",
        )
        .unwrap();
        let series = read_file(&file, "m").unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "m/up{job=\"a\"}");
        let file = dir.path().join("q.json");
        std::fs::write(
            &file,
            "\u{feff}{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}",
        )
        .unwrap();
        assert!(read_file(&file, "q").unwrap().is_empty());
    }

    #[test]
    fn a_single_file_is_named_with_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cat")).unwrap();
        let file = dir.path().join("cat/a.csv");
        std::fs::write(&file, "2014-01-01 00:00:00,1\n").unwrap();
        assert_eq!(read_path(&file).unwrap()[0].name, "cat/a");
    }

    #[test]
    fn two_files_that_give_one_series_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["a.csv", "a.txt"] {
            std::fs::write(dir.path().join(file), "2014-01-01 00:00:00,1\n").unwrap();
        }
        // Refused when listed, before any file is read.
        let error = HistoryFiles::find(dir.path()).unwrap_err().to_string();
        assert!(
            error.ends_with("would both name series a; rename one of them"),
            "{error}"
        );
        assert!(
            error.contains("a.csv") && error.contains("a.txt"),
            "{error}"
        );
    }

    #[test]
    fn one_series_twice_is_refused_within_a_file_and_across_files() {
        let matrix = |metrics: &[&str]| {
            let results: Vec<String> = metrics
                .iter()
                .map(|m| format!(r#"{{"metric":{{"__name__":"{m}"}},"values":[[1,"1"]]}}"#))
                .collect();
            format!(r#"{{"data":{{"result":[{}]}}}}"#, results.join(","))
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q.json"), matrix(&["x", "x"])).unwrap();
        let error = read_path(dir.path()).unwrap_err().to_string();
        assert!(
            error.ends_with("q.json: series q/x appears twice"),
            "{error}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q.json"), matrix(&["x"])).unwrap();
        std::fs::create_dir(dir.path().join("q")).unwrap();
        std::fs::write(dir.path().join("q/x.csv"), "2014-01-01 00:00:00,1\n").unwrap();
        let error = read_path(dir.path()).unwrap_err().to_string();
        assert!(error.contains("would both name series q/x"), "{error}");
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_path(dir.path()),
            Err(IngestError::Empty { .. })
        ));
    }
}
