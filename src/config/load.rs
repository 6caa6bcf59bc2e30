//! Finding, reading and layering the sources: defaults < file < `AMPLITUDE_*` env.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format as _, Json, Serialized, Yaml};
use figment::Figment;
use serde_json::{Map, Value};

use super::env::{
    CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_VARS, FLAGSMITH_ENVIRONMENTS_ENV, PROJECTS_PATH_ENV,
    PROJECT_ENV_VARS,
};
use super::error::ConfigError;
use super::raw::RawConfig;
use super::types::Config;
use super::validate::{build, Ctx};

/// A loaded configuration plus what the caller should log about it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated configuration.
    pub config: Config,
    /// Non-fatal findings (unknown fields, ignored settings), ready to log at WARN.
    pub warnings: Vec<String>,
    /// The config file that was read, if any (none when everything came from env).
    pub source: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum FileFormat {
    Yaml,
    Json,
}

impl Config {
    /// Loads the configuration from the process environment and the file named by
    /// `explicit_path` (`--config`), `PROXY_CONFIG_FILE_PATH` or the default path.
    pub fn load(explicit_path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        Self::load_from(explicit_path, &process_env())
    }

    /// Like [`Config::load`], with the environment passed in (for tests).
    pub fn load_from(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<LoadedConfig, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match env_value(env, CONFIG_PATH_ENV) {
                Some(p) => (PathBuf::from(p), true),
                None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
            },
        };
        let content = read_file(&file, explicit)?;
        let mut figment = Figment::new();
        if let Some((format, text)) = &content {
            figment = merge_file(figment, *format, text);
        }
        let mut origins: HashMap<String, &'static str> = HashMap::new();
        for (name, key) in ENV_VARS {
            if let Some(value) = env_value(env, name) {
                figment = figment.merge(Serialized::global(key, value));
                origins.insert((*key).to_string(), name);
            }
        }
        let mut tree = extract(&figment, &file)?;
        let mut warnings = Vec::new();
        let mut projects_dir = content.as_ref().map(|_| parent_dir(&file));
        let projects_file = env_value(env, PROJECTS_PATH_ENV)
            .map(PathBuf::from)
            .filter(|p| *p != file);
        if let Some(projects_file) = &projects_file {
            replace_projects(&mut tree, projects_file, &mut warnings)?;
            projects_dir = Some(parent_dir(projects_file));
        }
        let env_project = apply_env_project(&mut tree, env, &mut origins, &mut warnings);
        let env_flagsmith = apply_env_flagsmith(&mut tree, env, &mut origins)?;
        if content.is_none() && projects_file.is_none() && !env_project && !env_flagsmith {
            return Err(ConfigError::NoConfig { path: file });
        }
        let raw = deserialize(&tree, &origins, &mut warnings)?;
        let mut ctx = Ctx {
            origins: &origins,
            projects_dir: projects_dir.as_deref(),
            warnings: &mut warnings,
        };
        let config = build(raw, &mut ctx)?;
        Ok(LoadedConfig {
            config,
            warnings,
            source: content.map(|_| file),
        })
    }
}

/// The process environment; variables that are not valid UTF-8 are skipped (not ours).
fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// An env value, with blank values treated as unset (`FOO=` in compose files).
fn env_value<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn format_of(file: &Path) -> Result<FileFormat, ConfigError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yaml" | "yml") => Ok(FileFormat::Yaml),
        Some("json") => Ok(FileFormat::Json),
        _ => Err(ConfigError::UnsupportedFormat {
            path: file.to_path_buf(),
        }),
    }
}

/// Reads a config file; `None` when it is missing and was not named explicitly.
fn read_file(file: &Path, explicit: bool) -> Result<Option<(FileFormat, String)>, ConfigError> {
    let format = format_of(file)?;
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some((format, text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if explicit {
                Err(ConfigError::FileNotFound {
                    path: file.to_path_buf(),
                })
            } else {
                Ok(None)
            }
        }
        Err(source) => Err(ConfigError::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}

fn merge_file(figment: Figment, format: FileFormat, text: &str) -> Figment {
    if text.trim().is_empty() {
        return figment;
    }
    match format {
        FileFormat::Yaml => figment.merge(Yaml::string(text)),
        FileFormat::Json => figment.merge(Json::string(text)),
    }
}

fn extract(figment: &Figment, file: &Path) -> Result<Value, ConfigError> {
    figment.extract::<Value>().map_err(|e| ConfigError::Parse {
        path: file.to_path_buf(),
        message: e.kind.to_string(),
    })
}

/// `PROXY_PROJECTS_FILE_PATH` names a separate file: its `projects` replace the config file's.
fn replace_projects(
    tree: &mut Value,
    projects_file: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some((format, text)) = read_file(projects_file, true)? else {
        return Ok(());
    };
    let projects_tree = extract(&merge_file(Figment::new(), format, &text), projects_file)?;
    let projects = projects_tree
        .get("projects")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(object) = tree.as_object_mut() {
        if object.get("projects").is_some_and(|p| !p.is_null()) {
            warnings.push(format!(
                "projects in the config file are ignored: {PROJECTS_PATH_ENV} names {}",
                projects_file.display()
            ));
        }
        object.insert("projects".to_string(), projects);
    }
    Ok(())
}

/// Applies `AMPLITUDE_API_KEY`, `AMPLITUDE_SECRET_KEY` and
/// `AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY`: they create the single project when the file
/// lists none, override the fields of the file's project when it lists exactly one, and are
/// ignored with a warning when it lists several. Returns true when any of them is set.
fn apply_env_project(
    tree: &mut Value,
    env: &HashMap<String, String>,
    origins: &mut HashMap<String, &'static str>,
    warnings: &mut Vec<String>,
) -> bool {
    let set: Vec<(&'static str, &'static str, &str)> = PROJECT_ENV_VARS
        .iter()
        .filter_map(|(name, key)| env_value(env, name).map(|v| (*name, *key, v)))
        .collect();
    if set.is_empty() {
        return false;
    }
    let Some(object) = tree.as_object_mut() else {
        return true;
    };
    let projects = object
        .entry("projects")
        .or_insert_with(|| Value::Array(Vec::new()));
    if projects.is_null() {
        *projects = Value::Array(Vec::new());
    }
    let Some(list) = projects.as_array_mut() else {
        return true;
    };
    match list.len() {
        0 => {
            list.push(Value::Object(Map::new()));
            for (name, key) in PROJECT_ENV_VARS {
                origins.insert(format!("projects[0].{key}"), name);
            }
        }
        1 => {}
        n => {
            let names: Vec<&str> = set.iter().map(|(name, _, _)| *name).collect();
            warnings.push(format!(
                "{} ignored: the config file lists {n} projects",
                names.join(", ")
            ));
            return true;
        }
    }
    if let Some(project) = list.first_mut().and_then(Value::as_object_mut) {
        for (name, key, value) in set {
            project.insert(key.to_string(), Value::String(value.to_string()));
            origins.insert(format!("projects[0].{key}"), name);
        }
    }
    true
}

/// Applies `FLAGSMITH_ENVIRONMENT_KEY_PAIRS` (JSON text): it replaces the file's
/// `configuration.flagsmith.environments`. Returns true when it is set.
fn apply_env_flagsmith(
    tree: &mut Value,
    env: &HashMap<String, String>,
    origins: &mut HashMap<String, &'static str>,
) -> Result<bool, ConfigError> {
    let (name, path) = FLAGSMITH_ENVIRONMENTS_ENV;
    let Some(text) = env_value(env, name) else {
        return Ok(false);
    };
    let list: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::invalid(name, format!("must be a JSON list: {e}")))?;
    if !tree.is_object() {
        *tree = Value::Object(Map::new());
    }
    let mut node = tree;
    for key in ["configuration", "flagsmith"] {
        let Some(object) = node.as_object_mut() else {
            return Ok(true);
        };
        let child = object
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if child.is_null() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    if let Some(object) = node.as_object_mut() {
        object.insert("environments".to_string(), list);
        origins.insert(path.to_string(), name);
    }
    Ok(true)
}

/// Deserializes the merged tree, collecting unknown fields as warnings.
fn deserialize(
    tree: &Value,
    origins: &HashMap<String, &'static str>,
    warnings: &mut Vec<String>,
) -> Result<RawConfig, ConfigError> {
    let mut unknown = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(path_text(&path));
    let deserializer = serde_ignored::Deserializer::new(tree, &mut on_ignored);
    let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(deserializer);
    warnings.extend(unknown.into_iter().map(|p| format!("unknown field {p}")));
    raw.map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." => "config file".to_string(),
            _ => origins.get(&path).map_or(path, |env| (*env).to_string()),
        };
        ConfigError::invalid(field, e.into_inner().to_string())
    })
}

/// Formats an ignored-field path like the rest of the module: `projects[0].fooBar`.
fn path_text(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_text(parent)),
        P::Map { parent, key } => {
            let parent = path_text(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_text(parent)
        }
    }
}
