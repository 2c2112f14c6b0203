#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Body templates rendered in child processes of the real binary: a template that makes more
//! text than its child may hold (a list that repeats one long string, joined: the engine's fuel
//! charges the list's slots, not the text it joins) ends its child with an error that says so,
//! the next rendering gets a new child, and the calling process's memory is untouched. The same
//! through `provtrail routes test`, a process of its own.

use std::time::{Duration, Instant};

mod common;

use provtrail::routes::render::{Isolation, isolate};
use provtrail::routes::sink::Delivery;
use provtrail::routes::template::BodyTemplate;

const MIB: usize = 1 << 20;

/// Joined, 100,000 copies of a 1 MB error: 100 GB.
const REPEATED_AND_JOINED: &str = "{{ ([errors[0]] * 100000) | join | length }}";

fn render(template: &BodyTemplate, raw: &[u8]) -> Result<String, String> {
    let event: serde_json::Value = serde_json::from_slice(raw).unwrap();
    template
        .render(&Delivery {
            delivery_id: 1,
            route: "r",
            event_id: 1,
            event_key: "inv-large",
            key: "pt-1",
            attempt: 1,
            received_at: 0,
            raw,
            event: &event,
        })
        .map_err(|err| err.message)
}

/// The process ids of this process's rendering children that still run.
fn render_workers() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (name) state ppid …`: the name may hold spaces, not the `)` before the state.
        let after_name = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
        let mut fields = after_name.split(' ');
        let (state, parent) = (fields.next(), fields.next());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me.as_str())
            && state != Some("Z")
            && String::from_utf8_lossy(&cmdline).contains("render-worker")
        {
            children.push(pid);
        }
    }
    children.sort_unstable();
    children
}

/// The most memory this process has held, from the kernel.
fn peak_memory() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn a_rendering_past_its_childs_memory_fails_and_the_next_gets_a_new_child() {
    assert!(isolate(Isolation {
        program: env!("CARGO_BIN_EXE_provtrail").into(),
        memory: 256 * MIB as u64,
        time: Duration::from_secs(60),
        workers: 1,
    }));
    let raw = common::event_with_a_long_error(MIB);
    let bomb = BodyTemplate::compile(REPEATED_AND_JOINED).unwrap();
    let started = Instant::now();
    let err = render(&bomb, &raw).unwrap_err();
    assert!(
        err.contains("ended without a body") && err.contains("256 MiB"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        peak_memory() < 200 * MIB,
        "this process held {} MiB",
        peak_memory() / MIB
    );

    // The next rendering, in a new child, the one child there may be.
    let fine = BodyTemplate::compile("{{ errors[0] | length }} {{ tracking_number }}").unwrap();
    assert_eq!(render(&fine, &raw).unwrap(), format!("{MIB} tn-large"));
    // A template's own error comes back as it is, and the child goes on.
    let failing = BodyTemplate::compile("{{ tracking_number + 1 }}").unwrap();
    let err = render(&failing, &raw).unwrap_err();
    assert!(err.starts_with("template error"), "{err}");
    assert!(!err.contains("ended without a body"), "{err}");
    assert_eq!(render(&fine, &raw).unwrap(), format!("{MIB} tn-large"));

    // Text that 256 MiB holds (50 MB, made by doubling a buffer) renders.
    let large = BodyTemplate::compile("{{ ([errors[0]] * 50) | join | length }}").unwrap();
    assert_eq!(render(&large, &raw).unwrap(), (50 * MIB).to_string());

    // The child ignores the signals meant for the server (a service's stop sends them to every
    // process of it): the server's graceful stop goes on rendering.
    let child = render_workers();
    assert_eq!(child.len(), 1, "{child:?}");
    for signal in ["-TERM", "-INT"] {
        let sent = std::process::Command::new("kill")
            .args([signal, &child[0].to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(render_workers(), child);
    assert_eq!(render(&fine, &raw).unwrap(), format!("{MIB} tn-large"));
    // One killed while idle is replaced, and the next rendering does not fail for it.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &child[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(render(&fine, &raw).unwrap(), format!("{MIB} tn-large"));
    let replaced = render_workers();
    assert_eq!(replaced.len(), 1);
    assert_ne!(replaced, child);

    // `routes test`, which renders in a child of its own process.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[[routes]]\nname = \"bomb\"\n[routes.sink]\ntype = \"webhook\"\n\
             url = \"https://hooks.example.com/x\"\ncontent_type = \"text/plain\"\n\
             body_template = '{REPEATED_AND_JOINED}'\n"
        ),
    )
    .unwrap();
    let event = dir.path().join("event.json");
    // Within the largest document the command reads (1 MiB).
    std::fs::write(&event, common::event_with_a_long_error(1_000_000)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["routes", "test", "bomb", "--config"])
        .arg(&config)
        .arg("--event")
        .arg(&event)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("ended without a body"), "{said}");
    assert!(output.status.code().is_some(), "ended by a signal: {said}");
}
