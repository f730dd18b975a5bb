//! `lsrecd completions SHELL` and `lsrecd manpage`: shell completions and manual pages generated
//! from the command-line definition in [`crate::cli`], so they cannot disagree with `--help`.
//!
//! The package ships the output of these commands (see `packaging/generate.sh`); a test compares
//! the shipped files with what the binary generates.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::{Cli, CompletionsArgs, ManpageArgs};
use crate::exit::{self, CommandError};

/// One generated manual page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManPage {
    /// File name, e.g. `lsrecd.1` or `lsrecd-check.1`.
    pub file_name: String,
    /// The page in roff.
    pub text: String,
}

/// `lsrecd completions SHELL`: the completion script on stdout.
pub fn completions(a: CompletionsArgs) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    out.write_all(&completion_script(a.shell))
        .and_then(|()| out.flush())
        .map_err(|e| CommandError::new(exit::FAILURE, format!("cannot write: {e}")))
}

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "lsrecd", &mut script);
    script
}

/// `lsrecd manpage [--out-dir DIR]`: `lsrecd.1` on stdout, or every page written to DIR.
pub fn manpage(a: ManpageArgs) -> Result<(), CommandError> {
    let pages = man_pages();
    match a.out_dir {
        None => {
            let top = &pages[0].text;
            let mut out = std::io::stdout().lock();
            out.write_all(top.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| CommandError::new(exit::FAILURE, format!("cannot write: {e}")))
        }
        Some(dir) => {
            for page in &pages {
                write_page(&dir, page)?;
            }
            Ok(())
        }
    }
}

fn write_page(dir: &Path, page: &ManPage) -> Result<(), CommandError> {
    let path = dir.join(&page.file_name);
    std::fs::write(&path, &page.text).map_err(|e| {
        CommandError::new(
            exit::FAILURE,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    println!("{}", path.display());
    Ok(())
}

/// `lsrecd.1` first, then `lsrecd-SUBCOMMAND.1` for every subcommand `--help` lists.
pub fn man_pages() -> Vec<ManPage> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = vec![top_page(&command)];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(subcommand_page(sub));
    }
    pages
}

fn render(man: &Man, extra: &Roff) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render(&mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push_str(&extra.to_roff());
    text
}

fn top_page(command: &clap::Command) -> ManPage {
    let man = Man::new(command.clone()).manual("lsrecd manual");
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (file, what) in [
        (
            crate::cli::DEFAULT_CONFIG,
            "The configuration (TOML). Check it with lsrecd check.",
        ),
        (
            "/etc/lsrecd/access_key, /etc/lsrecd/secret_key",
            "The API keys, mode 0600 root, handed to the service by systemd (LoadCredential=).",
        ),
        (
            crate::config::DEFAULT_DATABASE,
            "The SQLite database (daemon.database). Members of group lsrecd may read it with \
             sqlite3 -readonly.",
        ),
        (
            "/usr/share/doc/lsrecd/",
            "config.toml.example (every key), database.md (tables and queries), operations.md \
             (the runbook).",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(file)])
            .text([roman(what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        (
            "LSRECD_CONFIG",
            "The configuration file, instead of --config.",
        ),
        (
            "LSRECD_ACCESS_KEY, LSRECD_SECRET_KEY",
            "The API keys, when the configuration file names none.",
        ),
        (
            "CREDENTIALS_DIRECTORY",
            "Set by systemd; lsrecd reads the files access_key and secret_key in it.",
        ),
        (
            "LSRECD_DATABASE",
            "The database read by lsrecd status and lsrecd records, instead of daemon.database.",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        (exit::OK, "Success."),
        (
            exit::FAILURE,
            "Failure (the message on standard error says which).",
        ),
        (exit::USAGE, "Invalid command line."),
        (
            exit::UNAVAILABLE,
            "The Live Station API could not be reached.",
        ),
        (
            exit::CONFIG,
            "Invalid configuration; each problem is printed as FILE:LINE:COLUMN: KEY: MESSAGE.",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(what)]);
    }
    see_also(&mut roff, command);
    ManPage {
        file_name: man.get_filename(),
        text: render(&man, &roff),
    }
}

fn subcommand_page(sub: &clap::Command) -> ManPage {
    let man = Man::new(sub.clone()).manual("lsrecd manual");
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("lsrecd"), roman("(1)")]);
    ManPage {
        file_name: man.get_filename(),
        text: render(&man, &roff),
    }
}

fn see_also(roff: &mut Roff, command: &clap::Command) {
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if !inlines.is_empty() {
            inlines.push(roman(", "));
        }
        inlines.push(bold(format!("lsrecd-{}", sub.get_name())));
        inlines.push(roman("(1)"));
    }
    for (page, section) in [("systemd.exec", "5"), ("sqlite3", "1")] {
        inlines.push(roman(", "));
        inlines.push(bold(page));
        inlines.push(roman(format!("({section})")));
    }
    roff.text(inlines);
    roff.control("PP", []);
    roff.text([
        roman("The operator runbook: "),
        italic("/usr/share/doc/lsrecd/operations.md"),
        roman("."),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_a_page_per_listed_subcommand_and_the_top_page_comes_first() {
        let pages = man_pages();
        assert_eq!(pages[0].file_name, "lsrecd.1");
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert!(names.contains(&"lsrecd-check.1"), "{names:?}");
        assert!(names.contains(&"lsrecd-completions.1"), "{names:?}");
        assert!(pages[0].text.starts_with(".ie"), "{}", &pages[0].text[..40]);
    }
}
