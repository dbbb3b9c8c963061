//! Printing answers: a table for people, JSON/YAML for programs, CSV for spreadsheets.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use libgo::Result;
use serde_json::Value;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// The API's JSON.
    Json,
    /// The API's JSON as YAML.
    Yaml,
    /// Comma-separated columns with a header row.
    Csv,
}

/// Columns of a table: header and how to read a cell from an item.
pub type Column<'a> = (&'static str, &'a dyn Fn(&Value) -> String);

/// Prints `items` as `format`: the JSON itself for json/yaml, `columns` for table/csv.
pub fn print_list(format: Format, items: &[Value], columns: &[Column<'_>]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, items)?;
            writeln!(out)?;
        }
        Format::Yaml => write!(out, "{}", to_yaml(&Value::Array(items.to_vec()))?)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            w.write_record(&header).map_err(csv_error)?;
            for item in items {
                w.write_record(columns.iter().map(|(_, f)| f(item)))
                    .map_err(csv_error)?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut t = Table::new();
            t.load_preset(presets::NOTHING)
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header(columns.iter().map(|(h, _)| *h));
            let coloured = colour_stdout();
            for item in items {
                t.add_row(columns.iter().map(|(header, f)| {
                    let text = f(item);
                    match state_colour(header, &text) {
                        Some(c) if coloured => Cell::new(text).fg(c),
                        _ => Cell::new(text),
                    }
                }));
            }
            // `docker ps` style: flush left, two spaces between columns.
            for column in t.column_iter_mut() {
                column.set_padding((0, 2));
            }
            for line in t.to_string().lines() {
                writeln!(out, "{}", line.trim_end())?;
            }
        }
    }
    Ok(())
}

/// Prints one object: JSON, YAML, or (table) `key: value` lines.
pub fn print_one(format: Format, item: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, item)?;
            writeln!(out)?;
        }
        Format::Yaml | Format::Table | Format::Csv => write!(out, "{}", to_yaml(item)?)?,
    }
    Ok(())
}

fn to_yaml(v: &Value) -> Result<String> {
    serde_yaml_ng::to_string(v).map_err(|e| libgo::Error::internal(format!("YAML: {e}")))
}

fn csv_error(e: csv::Error) -> libgo::Error {
    libgo::Error::internal(format!("CSV: {e}"))
}

/// A string field, `-` when absent.
pub fn field(item: &Value, name: &str) -> String {
    match &item[name] {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(","),
        other => plain(other),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bytes for people: `512MiB`, `1.5GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 || unit == 0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// The colour of a `STATE` cell: running green, paused yellow, error red, stopped grey.
fn state_colour(header: &str, state: &str) -> Option<Color> {
    if header != "STATE" {
        return None;
    }
    match state {
        "running" => Some(Color::Green),
        "paused" | "creating" => Some(Color::Yellow),
        "error" | "lost" => Some(Color::Red),
        "stopped" => Some(Color::DarkGrey),
        _ => None,
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether tables may be coloured: stdout is a terminal and `NO_COLOR` is unset.
fn colour_stdout() -> bool {
    !no_color() && std::io::stdout().is_terminal()
}

/// Whether colour may be used on stderr: a terminal, and `NO_COLOR` unset.
pub fn colour() -> bool {
    !no_color() && std::io::stderr().is_terminal()
}
