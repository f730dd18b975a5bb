//! The runbook (`docs/operations.md`) is run for real by `packaging/test-deb.sh`, against the
//! installed package. Every command of the runbook's ```` ```sh ```` blocks must be there, word
//! for word, in a `runbook <<'SH'` heredoc (which the script runs), or in the script's list of
//! commands it cannot run here (`# not run: COMMAND`, followed by a comment saying what runs
//! instead). This test keeps the two in step: a command added to the runbook without being run
//! fails it, and so does one the script runs or excuses that the runbook no longer has.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `line` without a trailing shell comment (a `#` after blank space, outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

/// The commands in shell `lines`: continuation lines joined, comments and blank lines dropped,
/// runs of blank space made one space.
fn commands<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in lines {
        let (line, continued) = match line.trim_end().strip_suffix('\\') {
            Some(head) => (head, true),
            None => (line, false),
        };
        pending.push(' ');
        pending.push_str(without_comment(line));
        if !continued {
            let command = pending.split_whitespace().collect::<Vec<_>>().join(" ");
            if !command.is_empty() {
                out.push(command);
            }
            pending.clear();
        }
    }
    out
}

/// The commands of the runbook's `sh` blocks, in order.
fn runbook_commands(markdown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fence: Option<bool> = None; // Some(is_sh) inside a fenced block
    for line in markdown.lines() {
        match (fence, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => fence = Some(info.trim() == "sh"),
            (Some(_), Some(_)) => fence = None,
            (Some(true), None) => lines.push(line),
            _ => {}
        }
    }
    assert!(
        fence.is_none(),
        "docs/operations.md ends inside a code block"
    );
    commands(lines)
}

/// What packaging/test-deb.sh does with the runbook.
struct Script {
    /// Commands in `runbook ... <<'SH'` heredocs.
    run: Vec<String>,
    /// Commands in `# not run:` lines.
    not_run: Vec<String>,
}

fn script(text: &str) -> Script {
    let mut run = Vec::new();
    let mut not_run = Vec::new();
    let mut heredoc: Option<Vec<&str>> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(body) = heredoc.as_mut() {
            if line == "SH" {
                run.extend(commands(heredoc.take().unwrap_or_default()));
            } else {
                body.push(line);
            }
        } else if line.trim_start().starts_with("runbook ") && line.ends_with("<<'SH'") {
            heredoc = Some(Vec::new());
        } else if let Some(command) = line.strip_prefix("# not run: ") {
            let why = lines.peek().copied().unwrap_or_default();
            let explained = why
                .strip_prefix('#')
                .is_some_and(|w| !w.trim().is_empty() && !w.starts_with(" not run:"));
            assert!(
                explained,
                "`# not run: {command}` in packaging/test-deb.sh must be followed by a comment \
                 saying what runs instead"
            );
            not_run.extend(commands([command]));
        }
    }
    assert!(
        heredoc.is_none(),
        "packaging/test-deb.sh ends inside a runbook heredoc"
    );
    Script { run, not_run }
}

#[test]
fn every_command_of_the_runbook_is_run_by_the_package_test_or_listed_as_not_run() {
    let documented = runbook_commands(&read("docs/operations.md"));
    let script = script(&read("packaging/test-deb.sh"));
    let run: BTreeSet<&str> = script.run.iter().map(String::as_str).collect();
    let not_run: BTreeSet<&str> = script.not_run.iter().map(String::as_str).collect();
    let documented_set: BTreeSet<&str> = documented.iter().map(String::as_str).collect();

    // The parsers found what is there: the blocks hold dozens of commands, a continued line
    // comes out whole, and a prompt's comment is not part of its command.
    assert!(documented.len() >= 40, "{documented:#?}");
    assert!(documented_set.contains(
        "printf '[Service]\\nLoadCredential=\\nLoadCredential=secret_key:/etc/lsrecd/secret_key\\n' \
         > /etc/systemd/system/lsrecd.service.d/keys.conf"
    ));
    assert!(documented_set.contains("usermod -aG lsrecd alice"));
    assert!(documented_set.contains("cargo deb"));
    assert!(run.len() >= 30, "{run:#?}");

    let missing: Vec<&str> = documented_set
        .iter()
        .copied()
        .filter(|c| !run.contains(c) && !not_run.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "commands of docs/operations.md that packaging/test-deb.sh neither runs (in a \
         `runbook <<'SH'` heredoc) nor lists under `# not run:`:\n  {}",
        missing.join("\n  ")
    );
    let stale: Vec<&str> = run
        .union(&not_run)
        .copied()
        .filter(|c| !documented_set.contains(c))
        .collect();
    assert!(
        stale.is_empty(),
        "packaging/test-deb.sh runs or excuses commands docs/operations.md does not have:\n  {}",
        stale.join("\n  ")
    );
    let both: Vec<&str> = run.intersection(&not_run).copied().collect();
    assert!(both.is_empty(), "both run and listed as not run: {both:?}");
}

#[test]
fn commands_are_joined_across_continuations_and_lose_their_comments() {
    let block = "cargo deb        # builds it\n\
                 printf 'a\\n' \\\n  > 'x # y'\n\
                 \n\
                 # a comment line\n\
                 grep -E '^a#b' \"c #d\" x#y   # the end";
    assert_eq!(
        commands(block.lines()),
        [
            "cargo deb",
            "printf 'a\\n' > 'x # y'",
            "grep -E '^a#b' \"c #d\" x#y"
        ]
    );
    let markdown = "text\n```sh\nls -l\n```\n```yaml\nkey: x\n```\n```\nplain\n```\n";
    assert_eq!(runbook_commands(markdown), ["ls -l"]);
}
