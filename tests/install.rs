//! What a newcomer installs beside the binary: shell completions and the man page, generated
//! from the same clap definitions as `--help`. No emulator needed: nothing here calls AWS.
use std::process::Command;

fn privbucket(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_privbucket"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "privbucket {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn bash_loads_the_completion_script_and_completes_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("privbucket.bash");
    std::fs::write(&script, privbucket(&["completions", "bash"])).unwrap();
    // Load it as bash-completion would, then ask it to complete `privbucket ` as bash does.
    let probe = format!(
        "source {} && complete -p privbucket && COMP_WORDS=(privbucket '') COMP_CWORD=1 \
         COMP_LINE='privbucket ' COMP_POINT=11 && _privbucket privbucket '' privbucket && \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash could not load the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for command in ["up", "status", "verify", "down", "completions", "man"] {
        assert!(
            stdout.lines().any(|l| l == command),
            "{command} is not completed:\n{stdout}"
        );
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        assert!(!privbucket(&["completions", shell]).is_empty(), "{shell}");
    }
}

#[test]
fn the_man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("privbucket.1");
    std::fs::write(&page, privbucket(&["man"])).unwrap();
    let out = Command::new("groff")
        // Plain text: no bold or underline by overstrike (grotty -c -b -o -u).
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(&page)
        .output()
        .expect("groff, which scripts/test.sh installs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "groff warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["NAME", "SYNOPSIS", "privbucket", "up", "down"] {
        assert!(text.contains(want), "{want} not in the page:\n{text}");
    }
}

#[test]
fn up_help_groups_its_flags_under_headings_and_gives_examples() {
    let help = String::from_utf8(privbucket(&["up", "--help"])).unwrap();
    let headings = [
        "The stack:",
        "Network:",
        "The bucket: policy, encryption and versioning:",
        "Hardening (on by default):",
        "Your function:",
        "Global options:",
    ];
    let at: Vec<usize> = headings
        .iter()
        .map(|h| {
            help.lines()
                .position(|l| l == *h)
                .unwrap_or_else(|| panic!("no heading {h:?} in up --help:\n{help}"))
        })
        .collect();
    assert!(at.is_sorted(), "headings out of order: {at:?}\n{help}");
    // A flag sits under its own heading: --vpc under Network, --code under Your function, the
    // global --state under Global options, not mixed in among up's own.
    let section_of = |flag: &str| {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} not in up --help"));
        headings[at.iter().rposition(|&h| h < line).unwrap()]
    };
    assert_eq!(section_of("--vpc <VPC_ID>"), "Network:");
    assert_eq!(
        section_of("--kms-key"),
        "The bucket: policy, encryption and versioning:"
    );
    assert_eq!(section_of("--no-tls-deny"), "Hardening (on by default):");
    assert_eq!(section_of("--code"), "Your function:");
    assert_eq!(section_of("--state"), "Global options:");
    assert_eq!(section_of("--lock-timeout"), "Global options:");
    assert!(help.contains("Examples:\n"), "{help}");
    assert!(
        help.contains("  privbucket up --name team-a --kms-key new"),
        "{help}"
    );
}
