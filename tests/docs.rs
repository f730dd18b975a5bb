//! The manual pages and shell completions: generated from the clap definitions by the binary,
//! shipped from `packaging/`, and checked here against each other and against `--help`.

#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory;

const REGENERATE: &str = "run packaging/generate.sh and commit the result";

fn lsrecd(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_lsrecd"))
        .args(args)
        .env_remove("LSRECD_CONFIG")
        .output()
        .expect("the lsrecd binary runs");
    assert!(
        out.status.success(),
        "lsrecd {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(lsrecd(args).stdout).expect("UTF-8 output")
}

fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(path)
}

/// The subcommands `lsrecd --help` lists, with their one-line descriptions.
fn subcommands() -> Vec<(String, String)> {
    let command = lsrecd::cli::Cli::command();
    command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            (s.get_name().to_string(), about)
        })
        .collect()
}

/// Roff text back to plain words: escapes of `-` removed.
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
}

#[test]
fn the_manual_page_names_every_subcommand_that_help_lists_with_its_description() {
    let page = plain(&stdout(&["manpage"]));
    let help = stdout(&["--help"]);
    let listed = page
        .split_once(".SH SUBCOMMANDS")
        .map(|(_, rest)| rest.split(".SH ").next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no SUBCOMMANDS section in:\n{page}"));
    let all = subcommands();
    assert!(all.len() >= 10, "{all:?}");
    for (name, about) in all {
        assert!(
            help.contains(&format!("  {name} ")),
            "--help does not list {name}"
        );
        assert!(
            listed.contains(&format!("lsrecd-{name}(1)")),
            "the man page does not list {name}:\n{listed}"
        );
        assert!(
            listed.contains(&about),
            "the man page does not describe {name} as --help does ({about:?}):\n{listed}"
        );
    }
}

#[test]
fn every_subcommand_has_its_own_page_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    lsrecd(&["manpage", "--out-dir", out_dir]);
    for (name, _) in subcommands() {
        let path = dir.path().join(format!("lsrecd-{name}.1"));
        let page =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            page.contains(".TH lsrecd\\-{name} 1")
                || page.contains(&format!(".TH lsrecd-{name} 1")),
            "{page}"
        );
    }
    let check = plain(&std::fs::read_to_string(dir.path().join("lsrecd-check.1")).unwrap());
    for option in ["--no-credentials", "--next", "--json"] {
        assert!(
            check.contains(option),
            "{option} not in lsrecd-check.1:\n{check}"
        );
    }
}

#[test]
fn the_shipped_pages_and_completions_are_what_the_binary_generates() {
    let generated = lsrecd::commands::docs::man_pages();
    let mut shipped: Vec<String> = std::fs::read_dir(packaging("man"))
        .expect("packaging/man exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    let mut expected: Vec<String> = generated.iter().map(|p| p.file_name.clone()).collect();
    expected.sort();
    assert_eq!(
        shipped, expected,
        "packaging/man is out of date: {REGENERATE}"
    );
    for page in generated {
        let on_disk = std::fs::read_to_string(packaging(&format!("man/{}", page.file_name)))
            .expect("readable page");
        assert!(
            on_disk == page.text,
            "packaging/man/{} is out of date: {REGENERATE}",
            page.file_name
        );
    }
    for (file, shell) in [
        ("lsrecd.bash", "bash"),
        ("_lsrecd", "zsh"),
        ("lsrecd.fish", "fish"),
    ] {
        let on_disk = std::fs::read(packaging(&format!("completions/{file}"))).expect(file);
        assert!(
            on_disk == lsrecd(&["completions", shell]).stdout,
            "packaging/completions/{file} is out of date: {REGENERATE}"
        );
    }
}

/// What bash offers after `words` (the last one being completed), with the shipped script.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = packaging("completions/lsrecd.bash");
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let cword = words.len() - 1;
    let cur = words[cword];
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}'\nCOMP_WORDS=({words_array})\nCOMP_CWORD={cword}\n\
         _lsrecd lsrecd '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand_and_completes_a_prefix() {
    let offered = bash_completes(&["lsrecd", ""]);
    for (name, _) in subcommands() {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
    assert_eq!(bash_completes(&["lsrecd", "sta"]), ["status", "start"]);
    let shells = bash_completes(&["lsrecd", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
    let check = bash_completes(&["lsrecd", "check", "--no"]);
    assert_eq!(check, ["--no-credentials"]);
}

#[test]
fn man_renders_the_shipped_page_without_warnings() {
    let Ok(out) = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(packaging("man/lsrecd.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    else {
        tools::MAN.skip("not on PATH");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man warned:\n{stderr}");
    for heading in [
        "SUBCOMMANDS",
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(text.contains(heading), "{heading} not in:\n{text}");
    }
}
