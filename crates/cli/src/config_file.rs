//! Where `keel serve`'s settings come from: flags, `KEEL_*` environment
//! variables, a TOML file (`--config`) and built-in defaults, in that order of
//! precedence.
//!
//! The flags themselves ([`ServeArgs`]) are the one table of settings: a file key
//! is a flag's name with `_` (its clap id), and its meaning, environment variable
//! and default are the flag's. [`resolve`] picks, for every flag, the value of
//! the highest layer that sets it, checks values from the environment and the file
//! with the flag's own parser (so they are refused exactly as the flag would be,
//! but naming the variable, or the file, key and line), and parses the winners
//! into a [`ServeArgs`]. [`default_file`] prints every flag as a commented file.

use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ArgAction;
use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::serve::{FILE_EXAMPLES, ServeArgs};

/// The flag naming the file; it cannot be set in the file itself.
const CONFIG_ARG: &str = "config";
/// The only structured setting: a table of node id → address in a file, the
/// flag's `1=HOST:PORT,2=HOST:PORT` everywhere else.
const MEMBERS_ARG: &str = "initial_cluster";

/// How a setting is written in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `true` or `false` (a switch such as `--learner`).
    Bool,
    /// A non-negative integer.
    Integer,
    /// A table `{ 1 = "HOST:PORT", ... }`.
    Members,
    /// A string (addresses, paths, names, one of a set of words).
    Text,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            return Kind::Bool;
        }
        if arg.get_id() == MEMBERS_ARG {
            return Kind::Members;
        }
        let t = arg.get_value_parser().type_id();
        let unsigned = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
        ];
        if unsigned.iter().any(|u| t == *u) {
            Kind::Integer
        } else {
            Kind::Text
        }
    }

    fn expected(self, arg: &Arg) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Integer => "a non-negative integer".into(),
            Kind::Members => "a table of node ids to addresses, like \
                 { 1 = \"10.0.0.1:7001\", 2 = \"10.0.0.2:7001\" }"
                .into(),
            Kind::Text => match possible_values(arg) {
                Some(words) => format!("a string, one of {words}"),
                None => "a string".into(),
            },
        }
    }

    /// A flag-syntax value as TOML.
    fn to_toml(self, value: &str) -> String {
        match self {
            Kind::Bool | Kind::Integer => value.to_string(),
            Kind::Text => toml_string(value),
            Kind::Members => {
                let entries: Option<Vec<String>> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (id, addr) = p.split_once('=')?;
                        let id = id.trim();
                        id.parse::<u64>().ok()?;
                        Some(format!("{id} = {}", toml_string(addr.trim())))
                    })
                    .collect();
                match entries {
                    Some(e) if e.is_empty() => "{}".into(),
                    Some(e) => format!("{{ {} }}", e.join(", ")),
                    // Not ID=HOST:PORT: shown as given (starting the node says why).
                    None => toml_string(value),
                }
            }
        }
    }
}

/// A TOML basic string. JSON's string escapes are a subset of TOML's.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn possible_values(arg: &Arg) -> Option<String> {
    let words: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_string())
        .collect();
    (!words.is_empty()).then(|| words.join(", "))
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The command line.
    Flag,
    /// This environment variable.
    Env(String),
    /// The config file, at this line.
    File { line: usize },
    /// The flag's built-in default.
    Default,
    /// Nothing sets it and it has no default.
    Unset,
}

/// One setting's effective value and its origin.
#[derive(Clone, Debug)]
pub(crate) struct Setting {
    /// The file key (the flag's clap id).
    pub(crate) key: String,
    long: String,
    kind: Kind,
    /// The value in flag syntax; `None` when unset.
    pub(crate) value: Option<OsString>,
    pub(crate) source: Source,
}

/// The outcome of [`resolve`]: the parsed flags and where each came from.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) args: ServeArgs,
    pub(crate) file: Option<PathBuf>,
    pub(crate) settings: Vec<Setting>,
}

/// `keel serve`'s flags as clap declares them (with their `KEEL_*` names).
fn serve_command() -> Command {
    ServeArgs::augment_args(Command::new("keel serve"))
}

/// The settings a file may hold: every flag but `--config` and the hidden ones
/// (test faults, which belong on a test's command line, never in a file).
fn file_keys(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_id() != CONFIG_ARG && a.get_long().is_some() && !a.is_hide_set())
}

/// Resolves `keel serve`'s settings. `matches` are clap's (only values given on
/// the command line are taken from them); `env` looks up an environment variable.
pub(crate) fn resolve(
    matches: &ArgMatches,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> anyhow::Result<Resolved> {
    let spec = serve_command();
    let from_flags = |id: &str| -> Option<OsString> {
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            return None;
        }
        matches.get_raw(id)?.next().map(OsStr::to_os_string)
    };
    let from_env = |arg: &Arg| -> Option<(String, OsString)> {
        let name = arg.get_env()?.to_str()?;
        env(name).map(|v| (name.to_string(), v))
    };

    let config_arg = spec
        .get_arguments()
        .find(|a| a.get_id() == CONFIG_ARG)
        .context("keel serve has no --config flag")?;
    let file = from_flags(CONFIG_ARG)
        .or_else(|| from_env(config_arg).map(|(_, v)| v))
        .map(PathBuf::from);
    let file_values = match &file {
        Some(path) => ConfigFile::load(path, &spec)?.values,
        None => Vec::new(),
    };

    let mut settings = Vec::new();
    let mut errors = Vec::new();
    let mut parser = without_env(spec.clone());
    for arg in spec.get_arguments().filter(|a| a.get_long().is_some()) {
        let key = arg.get_id().as_str();
        let (value, source) = if let Some(v) = from_flags(key) {
            (Some(v), Source::Flag)
        } else if let Some((name, v)) = from_env(arg) {
            if let Err(why) = check_value(arg, &v) {
                errors.push(format!(
                    "environment variable {name}={:?}: {why}",
                    v.to_string_lossy()
                ));
            }
            (Some(v), Source::Env(name))
        } else if let Some(fv) = file_values.iter().find(|fv| fv.key == key) {
            (
                Some(OsString::from(&fv.value)),
                Source::File { line: fv.line },
            )
        } else if let Some(d) = default_of(arg) {
            (Some(d), Source::Default)
        } else {
            (None, Source::Unset)
        };
        if let Some(v) = &value {
            let v = v.clone();
            parser = parser.mut_arg(key, |a| a.default_value(v));
        }
        // Hidden flags (test faults) are not settings an operator manages.
        if key != CONFIG_ARG && !arg.is_hide_set() {
            settings.push(Setting {
                key: key.to_string(),
                long: arg.get_long().unwrap_or(key).to_string(),
                kind: Kind::of(arg),
                value,
                source,
            });
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    let parsed = parser
        .try_get_matches_from(["keel serve"])
        .context("invalid settings")?;
    let args = ServeArgs::from_arg_matches(&parsed).context("invalid settings")?;
    Ok(Resolved {
        args,
        file,
        settings,
    })
}

/// The command with its environment variables detached, so that values come only
/// from what [`resolve`] chose.
fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|a| a.env(None))
}

/// Parses `value` with `arg`'s own parser; the error says why it is refused.
fn check_value(arg: &Arg, value: &OsStr) -> Result<(), String> {
    let arg = arg.clone().env(None).default_value(value.to_os_string());
    Command::new("keel")
        .arg(arg)
        .try_get_matches_from(["keel"])
        .map(drop)
        .map_err(|e| clap_reason(&e))
}

/// The reason inside a clap error, without clap's usage hints.
fn clap_reason(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_string()
}

/// clap checks `KEEL_*` variables while parsing and reports a bad value as if the
/// flag had been given. When it was a variable, this says so (the message for
/// the variable, naming its value); `None` leaves clap's message as it is.
pub(crate) fn env_value_error(
    root: &Command,
    e: &clap::Error,
    argv: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<String> {
    use clap::error::ErrorKind;
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split(' ').next()?;
    let given = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    if given {
        return None;
    }
    let name = find_env(root, long)?;
    let value = env(&name)?;
    Some(format!(
        "environment variable {name}={:?}: {}",
        value.to_string_lossy(),
        clap_reason(e)
    ))
}

/// The environment variable of flag `--long` in `cmd` or any subcommand.
fn find_env(cmd: &Command, long: &str) -> Option<String> {
    let here = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    here.or_else(|| cmd.get_subcommands().find_map(|c| find_env(c, long)))
}

/// One key of a config file, converted to flag syntax.
#[derive(Debug)]
struct FileValue {
    key: String,
    value: String,
    line: usize,
}

/// A config file's settings, each checked against its flag.
struct ConfigFile {
    values: Vec<FileValue>,
}

impl ConfigFile {
    /// Reads and checks `path`; every problem is reported, each with its line.
    fn load(path: &Path, spec: &Command) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let at =
            |line: usize, msg: &str| format!("config file {}, line {line}: {msg}", path.display());
        let table = DeTable::parse(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            anyhow::anyhow!(at(line, &format!("not valid TOML: {}", e.message())))
        })?;
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for (key, value) in table.get_ref().iter() {
            let line = line_of(&text, key.span().start);
            let name = key.get_ref().as_ref();
            let Some(arg) = file_keys(spec).find(|a| a.get_id() == name) else {
                errors.push((line, at(line, &unknown_key(name, spec))));
                continue;
            };
            let converted = file_value(arg, value.get_ref(), &text)
                .map_err(|(at_line, msg)| (at_line.unwrap_or(line), msg))
                .and_then(|v| {
                    check_value(arg, OsStr::new(&v))
                        .map(|()| v.clone())
                        .map_err(|why| {
                            (
                                line,
                                format!("`{name} = {}`: {why}", Kind::of(arg).to_toml(&v)),
                            )
                        })
                });
            match converted {
                Ok(v) => values.push(FileValue {
                    key: name.to_string(),
                    value: v,
                    line,
                }),
                Err((line, msg)) => errors.push((line, at(line, &msg))),
            }
        }
        if !errors.is_empty() {
            errors.sort();
            let lines: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
            anyhow::bail!("{}", lines.join("\n"));
        }
        Ok(ConfigFile { values })
    }
}

/// A file value in flag syntax, or why it has the wrong type (with the line of
/// the offending part, when it is not the key's).
fn file_value(
    arg: &Arg,
    value: &DeValue<'_>,
    text: &str,
) -> Result<String, (Option<usize>, String)> {
    let key = arg.get_id().as_str();
    let kind = Kind::of(arg);
    match (kind, value) {
        (Kind::Bool, DeValue::Boolean(b)) => Ok(b.to_string()),
        (Kind::Text, DeValue::String(s)) => Ok(s.to_string()),
        (Kind::Integer, DeValue::Integer(i)) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 => Ok(n.to_string()),
            _ => Err((None, format!("`{key}` must be {}", kind.expected(arg)))),
        },
        (Kind::Members, DeValue::Table(t)) => {
            let mut entries = Vec::new();
            for (id, addr) in t.iter() {
                let line = Some(line_of(text, id.span().start));
                let id = id.get_ref();
                let Some(n) = id.parse::<u64>().ok().filter(|&n| n > 0) else {
                    let msg = format!("`{key}`: {id:?} is not a node id (a positive integer)");
                    return Err((line, msg));
                };
                let Some(addr) = addr.get_ref().as_str() else {
                    return Err((line, format!("`{key}.{id}` must be a string \"HOST:PORT\"")));
                };
                entries.push((n, format!("{n}={addr}")));
            }
            entries.sort();
            let parts: Vec<String> = entries.into_iter().map(|(_, e)| e).collect();
            Ok(parts.join(","))
        }
        _ => Err((
            None,
            format!(
                "`{key}` must be {}, not {} {}",
                kind.expected(arg),
                article(value.type_str()),
                value.type_str()
            ),
        )),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn unknown_key(name: &str, spec: &Command) -> String {
    if name == CONFIG_ARG {
        return "`config` cannot be set in a config file".into();
    }
    let nearest = file_keys(spec)
        .map(|a| a.get_id().as_str())
        .map(|k| (edit_distance(name, k), k))
        .min();
    match nearest {
        Some((d, k)) if d <= 3 => format!("unknown key `{name}` (did you mean `{k}`?)"),
        _ => format!(
            "unknown key `{name}` (the keys are `keel serve`'s flags with `_`: \
             see `keel config default`)"
        ),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Source {
    fn describe(&self, file: Option<&Path>) -> String {
        match self {
            Source::Flag => "command line".into(),
            Source::Env(name) => format!("environment variable {name}"),
            Source::File { line } => match file {
                Some(f) => format!("config file {}, line {line}", f.display()),
                None => format!("config file, line {line}"),
            },
            Source::Default => "default".into(),
            Source::Unset => "not set".into(),
        }
    }
}

impl Resolved {
    /// The node's configuration, checked as `keel serve` checks it; an error names
    /// where the settings it mentions came from.
    pub(crate) fn config(&self) -> anyhow::Result<keel_server::ServerConfig> {
        self.args.clone().into_config().map_err(|e| {
            let msg = format!("{e:#}");
            let origins: Vec<String> = self
                .settings
                .iter()
                .filter(|s| !matches!(s.source, Source::Default | Source::Unset))
                .filter(|s| mentions(&msg, &s.key) || mentions(&msg, &format!("--{}", s.long)))
                .map(|s| format!("{}: {}", s.key, s.source.describe(self.file.as_deref())))
                .collect();
            if origins.is_empty() {
                e
            } else {
                anyhow::anyhow!("{msg} ({})", origins.join("; "))
            }
        })
    }

    /// The effective settings as a config file, each with where it came from.
    pub(crate) fn render(&self) -> String {
        let mut out = String::from(
            "# The effective configuration of `keel serve` (precedence: command line, \
             environment, config file, default).\n",
        );
        if let Some(f) = &self.file {
            let _ = writeln!(out, "# Config file: {}", f.display());
        }
        let lines: Vec<(String, String)> = self
            .settings
            .iter()
            .map(|s| {
                let origin = s.source.describe(self.file.as_deref());
                let origin = match s.source {
                    Source::File { line } => format!("config file, line {line}"),
                    _ => origin,
                };
                let assignment = match &s.value {
                    Some(v) => format!("{} = {}", s.key, s.kind.to_toml(&v.to_string_lossy())),
                    None => format!("#{}", s.key),
                };
                (assignment, origin)
            })
            .collect();
        let width = lines
            .iter()
            .map(|(a, _)| a.len())
            .max()
            .unwrap_or(0)
            .min(48);
        for (assignment, origin) in lines {
            let _ = writeln!(out, "{assignment:width$}  # {origin}");
        }
        out
    }
}

/// The flag's built-in default (`false` for a switch).
fn default_of(arg: &Arg) -> Option<OsString> {
    match arg.get_default_values().first() {
        Some(d) => Some(d.to_os_string()),
        None if Kind::of(arg) == Kind::Bool => Some("false".into()),
        None => None,
    }
}

/// Whether `msg` mentions `word` as a whole word (`tick_ms`, `--id`).
fn mentions(msg: &str, word: &str) -> bool {
    let part_of_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    msg.match_indices(word).any(|(i, _)| {
        let before = msg[..i].chars().next_back();
        let after = msg[i + word.len()..].chars().next();
        !before.is_some_and(part_of_word) && !after.is_some_and(part_of_word)
    })
}

/// A complete configuration file: every setting with its meaning, flag,
/// environment variable and default. Settings without a default are shown
/// commented out, with an example value.
pub(crate) fn default_file() -> String {
    let spec = serve_command();
    let mut out = String::from(DEFAULT_FILE_HEADER);
    for arg in file_keys(&spec) {
        let key = arg.get_id().as_str();
        let kind = Kind::of(arg);
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut about = help.split_whitespace().collect::<Vec<_>>().join(" ");
        if !about.ends_with(['.', '!', '?']) {
            about.push('.'); // clap drops a one-sentence doc comment's period
        }
        if let Some(words) = possible_values(arg).filter(|_| kind == Kind::Text) {
            let _ = write!(about, " One of: {words}.");
        }
        if kind == Kind::Members {
            about.push_str(
                " In this file a table of node id to address; the flag and the \
                 environment variable take `1=HOST:PORT,2=HOST:PORT`.",
            );
        }
        let default = default_of(arg)
            .map(|d| d.to_string_lossy().into_owned())
            .filter(|d| !d.is_empty());
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let mut origin = format!("Flag --{}", arg.get_long().unwrap_or(key));
        if let Some(env) = env {
            let _ = write!(origin, ", environment {env}");
        }
        origin.push_str(if default.is_some() {
            "."
        } else {
            ". No default."
        });
        for line in wrap(&about, 76).into_iter().chain([origin]) {
            let _ = writeln!(out, "# {line}");
        }
        match default {
            Some(d) => {
                let _ = writeln!(out, "{key} = {}", kind.to_toml(&d));
            }
            None => {
                let example = FILE_EXAMPLES
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or("", |(_, e)| e);
                let _ = writeln!(out, "#{key} = {example}");
            }
        }
    }
    out
}

const DEFAULT_FILE_HEADER: &str = "\
# keel serve configuration: `keel serve --config FILE` (or KEEL_CONFIG=FILE).
# Written by `keel config default`; `keel config check --config FILE` checks a
# file and shows where every effective value comes from.
#
# Every key is a `keel serve` flag spelled with `_` (`data_dir` is --data-dir)
# and has an environment variable (KEEL_DATA_DIR). Precedence, highest first:
# command-line flag, environment variable, this file, built-in default.
# Unknown keys and values of the wrong type are refused, naming the line.
#
# Keys commented out have no default. Before the first start set `id`,
# `data_dir`, and either `initial_cluster` (to bootstrap a new cluster) or
# `join` (to join a running one).
";

/// Splits `text` into lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(flags: &[&str]) -> ArgMatches {
        let argv = std::iter::once("keel serve").chain(flags.iter().copied());
        without_env(serve_command())
            .try_get_matches_from(argv)
            .expect("valid flags")
    }

    /// Resolves `flags` with exactly the environment `env`.
    fn resolve_with(flags: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Resolved> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        };
        resolve(&matches(flags), &lookup)
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    fn path(f: &tempfile::NamedTempFile) -> &str {
        f.path().to_str().expect("utf-8 temp path")
    }

    fn source(r: &Resolved, key: &str) -> Source {
        let s = r.settings.iter().find(|s| s.key == key).expect("a setting");
        s.source.clone()
    }

    /// Asserts that `r` failed with a message containing every one of `wants`.
    fn refused<T: std::fmt::Debug>(r: anyhow::Result<T>, wants: &[String]) {
        let err = format!("{:#}", r.expect_err("must be refused"));
        for want in wants {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    /// Resolves with `text` as the config file; `wants` are each expected after
    /// "config file PATH, line ".
    fn file_refused(text: &str, wants: &[&str]) {
        let f = file(text);
        let at = format!("config file {}, line ", path(&f));
        let wants: Vec<String> = wants.iter().map(|w| format!("{at}{w}")).collect();
        refused(resolve_with(&["--config", path(&f)], &[]), &wants);
    }

    const FILE: &str = "election_timeout_ms = 500\nlearner = true\n";

    #[test]
    fn a_default_applies_when_nothing_sets_the_value() {
        let r = resolve_with(&[], &[]).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 300);
        assert_eq!(source(&r, "election_timeout_ms"), Source::Default);
        assert!(!r.args.learner);
        assert_eq!(source(&r, "learner"), Source::Default);
        assert_eq!(r.args.http, None);
        assert_eq!(source(&r, "http"), Source::Unset);
        assert!(r.file.is_none());
    }

    #[test]
    fn the_file_overrides_defaults() {
        let f = file(FILE);
        let r = resolve_with(&["--config", path(&f)], &[]).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 500);
        assert_eq!(source(&r, "election_timeout_ms"), Source::File { line: 1 });
        assert!(r.args.learner);
        assert_eq!(source(&r, "learner"), Source::File { line: 2 });
        assert_eq!(r.args.heartbeat_interval_ms, 50, "keys not in the file");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let f = file(FILE);
        let env = [
            ("KEEL_ELECTION_TIMEOUT_MS", "700"),
            ("KEEL_LEARNER", "false"),
        ];
        let r = resolve_with(&["--config", path(&f)], &env).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 700);
        let env_source = |name: &str| Source::Env(name.to_string());
        assert_eq!(
            source(&r, "election_timeout_ms"),
            env_source("KEEL_ELECTION_TIMEOUT_MS")
        );
        assert!(!r.args.learner, "a variable set to false beats the file");
        assert_eq!(source(&r, "learner"), env_source("KEEL_LEARNER"));
    }

    #[test]
    fn a_flag_overrides_the_environment_and_the_file() {
        let f = file(FILE);
        let env = [("KEEL_ELECTION_TIMEOUT_MS", "700")];
        let flags = ["--config", path(&f), "--election-timeout-ms", "900"];
        let r = resolve_with(&flags, &env).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 900);
        assert_eq!(source(&r, "election_timeout_ms"), Source::Flag);
    }

    #[test]
    fn a_flag_equal_to_the_default_still_overrides_the_file() {
        let f = file(FILE);
        let flags = ["--config", path(&f), "--election-timeout-ms", "300"];
        let r = resolve_with(&flags, &[]).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 300);
        assert_eq!(source(&r, "election_timeout_ms"), Source::Flag);
    }

    #[test]
    fn the_file_can_be_named_by_the_environment() {
        let f = file(FILE);
        let r = resolve_with(&[], &[("KEEL_CONFIG", path(&f))]).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 500);
        assert_eq!(r.file.as_deref(), Some(f.path()));
        // ...and a --config flag beats KEEL_CONFIG.
        let other = file("election_timeout_ms = 600\n");
        let flags = ["--config", path(&other)];
        let r = resolve_with(&flags, &[("KEEL_CONFIG", path(&f))]).expect("resolves");
        assert_eq!(r.args.election_timeout_ms, 600);
    }

    #[test]
    fn initial_cluster_is_a_table_in_the_file_and_a_list_elsewhere() {
        let f = file("[initial_cluster]\n2 = \"127.0.0.1:7002\"\n1 = \"127.0.0.1:7001\"\n");
        let r = resolve_with(&["--config", path(&f)], &[]).expect("resolves");
        assert_eq!(r.args.initial_cluster, "1=127.0.0.1:7001,2=127.0.0.1:7002");
        let f = file("initial_cluster = { 1 = \"127.0.0.1:7001\" }\n");
        let env = [("KEEL_INITIAL_CLUSTER", "1=127.0.0.1:7009")];
        let r = resolve_with(&["--config", path(&f)], &env).expect("resolves");
        assert_eq!(r.args.initial_cluster, "1=127.0.0.1:7009");
        assert!(
            r.render()
                .contains("initial_cluster = { 1 = \"127.0.0.1:7009\" }")
        );
    }

    #[test]
    fn the_default_file_resolves_like_no_flags_at_all() {
        let f = file(&default_file());
        let mut from_file = resolve_with(&["--config", path(&f)], &[])
            .expect("the default file is accepted")
            .args;
        assert_eq!(from_file.config.as_deref(), Some(f.path()));
        from_file.config = None;
        let bare = resolve_with(&[], &[]).expect("resolves").args;
        assert_eq!(from_file, bare);
    }

    #[test]
    fn the_default_file_documents_every_flag() {
        let text = default_file();
        let spec = serve_command();
        for arg in file_keys(&spec) {
            let key = arg.get_id().as_str();
            let long = arg.get_long().expect("every setting is a flag");
            let env = arg.get_env().expect("every flag has a variable");
            let assignment = text
                .lines()
                .find(|l| l.trim_start_matches('#').starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("`{key}` is missing from the default file"));
            let value = assignment.split_once(" = ").map_or("", |(_, v)| v);
            assert!(!value.is_empty(), "`{key}` has neither default nor example");
            assert!(text.contains(&format!("Flag --{long}, environment {env:?}").replace('"', "")));
        }
        assert!(
            !text.contains("config ="),
            "--config cannot be set in the file"
        );
    }

    #[test]
    fn examples_are_exactly_the_settings_without_default_and_are_valid() {
        let spec = serve_command();
        let mut without_default: Vec<&str> = file_keys(&spec)
            .filter(|a| default_of(a).is_none_or(|d| d.is_empty()))
            .map(|a| a.get_id().as_str())
            .collect();
        let mut examples: Vec<&str> = FILE_EXAMPLES.iter().map(|(k, _)| *k).collect();
        without_default.sort();
        examples.sort();
        assert_eq!(without_default, examples);
        for (key, example) in FILE_EXAMPLES {
            let f = file(&format!("{key} = {example}\n"));
            resolve_with(&["--config", path(&f)], &[])
                .unwrap_or_else(|e| panic!("example for `{key}`: {e:#}"));
        }
    }

    #[test]
    fn a_filled_in_default_file_starts_a_node() {
        let data = tempfile::tempdir().expect("tempdir");
        let text = default_file()
            .replace("#id = 1\n", "id = 1\n")
            .replace(
                "#data_dir = \"/var/lib/keel\"",
                &format!("data_dir = {}", toml_string(&data.path().to_string_lossy())),
            )
            .replace(
                "#initial_cluster = {",
                "initial_cluster = { 1 = \"127.0.0.1:7001\" }\n#",
            );
        let f = file(&text);
        let r = resolve_with(&["--config", path(&f)], &[]).expect("resolves");
        let cfg = r.config().expect("keel serve accepts it");
        assert_eq!(cfg.id, 1);
        assert_eq!(cfg.data_dir, data.path());
        assert_eq!(cfg.initial_cluster.len(), 1);
    }

    #[test]
    fn unknown_keys_are_refused_with_file_line_and_suggestion() {
        file_refused(
            "tick_ms = 10\n\nelecton_timeout_ms = 500\nfoo = 1\n",
            &[
                "3: unknown key `electon_timeout_ms` (did you mean `election_timeout_ms`?)",
                "4: unknown key `foo`",
            ],
        );
        file_refused(
            "config = \"/etc/other.toml\"\n",
            &["1: `config` cannot be set in a config file"],
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        file_refused(
            "election_timeout_ms = \"500\"\nlearner = \"yes\"\nlisten = 7001\n\
             initial_cluster = \"1=a:1\"\nsnapshot_entries = -1\ntick_ms = 1.5\n\
             log_format = 1\n",
            &[
                "1: `election_timeout_ms` must be a non-negative integer, not a string",
                "2: `learner` must be true or false, not a string",
                "3: `listen` must be a string, not an integer",
                "4: `initial_cluster` must be a table of node ids to addresses",
                "5: `snapshot_entries` must be a non-negative integer",
                "6: `tick_ms` must be a non-negative integer, not a float",
                "7: `log_format` must be a string, one of text, json, not an integer",
            ],
        );
    }

    #[test]
    fn values_the_flag_would_refuse_are_refused() {
        file_refused(
            "listen = \"nowhere\"\nio_threads = 0\nlog_format = \"xml\"\n\
             [initial_cluster]\nx = \"a:1\"\n",
            &[
                "1: `listen = \"nowhere\"`: invalid socket address syntax",
                "2: `io_threads = 0`: 0 is not in 1..=1024",
                "3: `log_format = \"xml\"`: expected one of text, json",
                "5: `initial_cluster`: \"x\" is not a node id",
            ],
        );
        refused(
            resolve_with(&[], &[("KEEL_IO_THREADS", "many")]),
            &["environment variable KEEL_IO_THREADS=\"many\": invalid digit".into()],
        );
    }

    #[test]
    fn syntax_errors_and_missing_files_name_the_file() {
        file_refused(
            "id = 1\ndata_dir = \"unterminated\n",
            &["2: not valid TOML"],
        );
        refused(
            resolve_with(&["--config", "/nonexistent/keel.toml"], &[]),
            &["cannot read config file /nonexistent/keel.toml".into()],
        );
    }

    #[test]
    fn node_validation_errors_say_where_the_settings_came_from() {
        let f = file("id = 1\ndata_dir = \"/tmp/x\"\ntick_ms = 0\n");
        let env = [("KEEL_INITIAL_CLUSTER", "1=127.0.0.1:7001")];
        let r = resolve_with(&["--config", path(&f)], &env).expect("resolves");
        let origin = format!("(tick_ms: config file {}, line 3)", path(&f));
        refused(
            r.config(),
            &[format!(
                "tick_ms (--tick-ms, KEEL_TICK_MS) must be in 1..=1000, got 0 {origin}"
            )],
        );
        let f = file("id = 1\ndata_dir = \"/tmp/x\"\n");
        let r = resolve_with(&["--config", path(&f), "--id", "2"], &env).expect("resolves");
        refused(
            r.config(),
            &[
                "id: command line".into(),
                "initial_cluster: environment variable KEEL_INITIAL_CLUSTER".into(),
            ],
        );
        let r = resolve_with(&[], &[]).expect("resolves");
        refused(
            r.config(),
            &["set --id, KEEL_ID or `id` in the config file".into()],
        );
    }

    #[test]
    fn render_shows_every_setting_and_its_origin() {
        let f = file(FILE);
        let env = [("KEEL_LOG_LEVEL", "debug")];
        let r = resolve_with(&["--config", path(&f), "--id", "4"], &env).expect("resolves");
        let text = r.render();
        let line = |key: &str| {
            text.lines()
                .find(|l| l.trim_start_matches('#').starts_with(key))
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("id"), "id = 4 # command line");
        assert_eq!(
            line("election_timeout_ms"),
            "election_timeout_ms = 500 # config file, line 1"
        );
        assert_eq!(
            line("log_level"),
            "log_level = \"debug\" # environment variable KEEL_LOG_LEVEL"
        );
        assert_eq!(line("tick_ms"), "tick_ms = 10 # default");
        assert_eq!(line("http"), "#http # not set");
        assert_eq!(
            text.lines().filter(|l| l.contains(" # ")).count(),
            r.settings.len()
        );
    }

    #[test]
    fn bad_variables_caught_by_clap_are_named() {
        let spec = serve_command();
        let env = |name: &str| (name == "KEEL_IO_THREADS").then(|| OsString::from("0"));
        let e = spec
            .clone()
            .mut_arg("io_threads", |a| a.default_value("0"))
            .try_get_matches_from(["keel serve"])
            .expect_err("0 threads is refused");
        let msg = env_value_error(&spec, &e, &[], &env);
        assert_eq!(
            msg.as_deref(),
            Some("environment variable KEEL_IO_THREADS=\"0\": 0 is not in 1..=1024")
        );
        let argv = [OsString::from("--io-threads=0")];
        assert_eq!(
            env_value_error(&spec, &e, &argv, &env),
            None,
            "given as a flag"
        );
        assert_eq!(env_value_error(&spec, &e, &[], &|_| None), None);
    }

    #[test]
    fn mentions_whole_words_only() {
        assert!(mentions("--id must be positive", "--id"));
        assert!(mentions("lists node 1 (--id 3)", "--id"));
        assert!(!mentions("--initial-cluster: node ids", "id"));
        assert!(mentions("tick_ms must be", "tick_ms"));
        assert!(!mentions("heartbeat_interval_ms (5)", "interval_ms"));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("data-dir", "data_dir"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
