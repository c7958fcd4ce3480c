//! Finding the model files: a dbt project (`dbt_project.yml` with its `model-paths` and
//! folder configuration) or a plain folder of `.sql` files, plus every `*.yml` beside them.

mod dbt_project;
mod schema_yml;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use sluice_core::Ident;

use crate::{config::ConfigLayer, data_tests::DataTest, error::ModelError};
use dbt_project::DbtProject;

/// One `.sql` model file.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// The file's stem.
    pub name: String,
    pub path: PathBuf,
    pub text: String,
    /// Configuration from `dbt_project.yml` folders and `schema.yml`, before the file's own.
    pub layer: ConfigLayer,
}

/// Everything read from the model directory.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub root: PathBuf,
    pub files: Vec<ModelFile>,
    /// Source name -> schema.
    pub sources: BTreeMap<String, Ident>,
    pub tests: Vec<DataTest>,
}

/// Every problem found, so `sluice check` can list them all at once.
#[derive(Debug)]
pub struct Problems(pub Vec<ModelError>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<ModelError> for Problems {
    fn from(e: ModelError) -> Self {
        Problems(vec![e])
    }
}

impl Project {
    /// Reads `dir` and refuses it if any file has a problem.
    pub fn load(dir: &Path) -> Result<Project, Problems> {
        let (project, problems) = Project::read(dir)?;
        if problems.is_empty() {
            Ok(project)
        } else {
            Err(Problems(problems))
        }
    }

    /// Reads `dir`: a dbt project if it holds `dbt_project.yml`, else a folder of models.
    /// Problems in single files come back beside what could be read, so that callers can
    /// report them together with later ones; an unreadable project is an error.
    pub fn read(dir: &Path) -> Result<(Project, Vec<ModelError>), Problems> {
        if !dir.is_dir() {
            return Err(
                ModelError::invalid(dir, None, "the models directory does not exist").into(),
            );
        }
        let dbt = if dir.join("dbt_project.yml").is_file() {
            let p = DbtProject::load(dir)?;
            refuse_packages_and_macros(dir, &p)?;
            Some(p)
        } else {
            None
        };
        let roots = dbt
            .as_ref()
            .map_or_else(|| vec![dir.to_path_buf()], |p| p.model_paths.clone());
        let mut project = Project {
            root: dir.to_path_buf(),
            ..Project::default()
        };
        let mut problems = Vec::new();
        let mut yml_layers: BTreeMap<String, (ConfigLayer, PathBuf, Option<usize>)> =
            BTreeMap::new();
        for root in &roots {
            let mut files = Vec::new();
            walk(root, &mut files).map_err(|e| Problems(vec![e]))?;
            for path in files {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or_default();
                let result = match ext {
                    "sql" => add_model(&mut project, root, &path, dbt.as_ref()),
                    "yml" | "yaml" => read(&path).and_then(|text| {
                        let parsed = schema_yml::parse(&path, &text)?;
                        for (name, (layer, line)) in parsed.models {
                            yml_layers.insert(name, (layer, path.clone(), line));
                        }
                        project.sources.extend(parsed.sources);
                        project.tests.extend(parsed.tests);
                        Ok(())
                    }),
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    problems.push(e);
                }
            }
        }
        check_duplicates(&project.files, &mut problems);
        for (name, (layer, path, line)) in yml_layers {
            match project.files.iter_mut().find(|f| f.name == name) {
                Some(f) => f.layer.overlay(&layer),
                None => problems.push(ModelError::invalid(
                    path,
                    line,
                    format!("describes model {name:?}, but there is no {name}.sql"),
                )),
            }
        }
        for t in &project.tests {
            if !project.files.iter().any(|f| f.name == t.model) {
                problems.push(ModelError::invalid(
                    &t.path,
                    t.line,
                    format!("test on unknown model {:?}", t.model),
                ));
            }
        }
        Ok((project, problems))
    }
}

fn add_model(
    project: &mut Project,
    root: &Path,
    path: &Path,
    dbt: Option<&DbtProject>,
) -> Result<(), ModelError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    Ident::new(&name)
        .map_err(|e| ModelError::invalid(path, None, format!("model name (the file name): {e}")))?;
    let relative: Vec<String> = path
        .strip_prefix(root)
        .unwrap_or(path)
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let layer = dbt.map(|p| p.layer_for(&relative)).unwrap_or_default();
    project.files.push(ModelFile {
        name,
        path: path.to_path_buf(),
        text: read(path)?,
        layer,
    });
    Ok(())
}

fn check_duplicates(files: &[ModelFile], problems: &mut Vec<ModelError>) {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for f in files {
        if let Some(first) = seen.insert(&f.name, &f.path) {
            problems.push(ModelError::invalid(
                &f.path,
                None,
                format!(
                    "model name {:?} is also used by {}",
                    f.name,
                    first.display()
                ),
            ));
        }
    }
}

/// dbt packages and macros would change what models mean; refuse them rather than
/// build something else.
fn refuse_packages_and_macros(dir: &Path, p: &DbtProject) -> Result<(), ModelError> {
    for file in ["packages.yml", "dependencies.yml"] {
        let path = dir.join(file);
        if path.is_file() {
            let text = read(&path)?;
            if text
                .lines()
                .any(|l| l.trim_start().starts_with("packages:"))
                && text.contains("- ")
            {
                return Err(ModelError::invalid(
                    &path,
                    line_of(&text, "packages:"),
                    "dbt packages are not supported by sluice",
                ));
            }
        }
    }
    for macros in &p.macro_paths {
        let mut files = Vec::new();
        if macros.is_dir() {
            walk(macros, &mut files)?;
        }
        if let Some(f) = files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "sql"))
        {
            return Err(ModelError::invalid(
                f,
                None,
                "macros are not supported by sluice; inline the SQL in the models",
            ));
        }
    }
    Ok(())
}

/// Every file under `dir`, sorted, not following symlinks out of it.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let kind = e.file_type().map_err(io)?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if kind.is_dir() {
            walk(&e.path(), out)?;
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The 1-based line of the first occurrence of `needle`.
pub(crate) fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
