#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The memory a webhook body template can take, measured with a counting allocator: a template
//! that doubles the text it built, on the largest event the server takes by default, stops at
//! its fuel, and renderings at once stay within their shared budget.
//!
//! One test in this binary: the allocator counts every thread's allocations.

use provtrail::routes::sink::Delivery;

mod common;
use provtrail::routes::template::BodyTemplate;

/// Counts the bytes allocated, and fails an allocation past its limit (which ends the process:
/// the test fails rather than take the machine's memory).
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const MIB: usize = 1 << 20;

/// A valid event of about `bytes` bytes, most of it one error message.
fn large_event(bytes: usize) -> (Vec<u8>, serde_json::Value) {
    let raw = common::event_with_a_long_error(bytes);
    let value = serde_json::from_slice(&raw).unwrap();
    (raw, value)
}

/// Renders each template for the event at once, each on its own thread, with at most `room`
/// bytes more than are in use now; returns their errors.
fn render_within(
    room: usize,
    templates: &[&BodyTemplate],
    raw: &[u8],
    event: &serde_json::Value,
) -> Vec<String> {
    ALLOCATOR.set_limit(ALLOCATOR.allocated() + room).unwrap();
    let errors = std::thread::scope(|scope| {
        let renders: Vec<_> = templates
            .iter()
            .map(|template| {
                scope.spawn(move || {
                    let delivery = Delivery {
                        delivery_id: 1,
                        route: "bomb",
                        event_id: 1,
                        event_key: "inv-large",
                        key: "pt-bomb",
                        attempt: 1,
                        received_at: 0,
                        raw,
                        event,
                    };
                    template.render(&delivery).unwrap_err().message
                })
            })
            .collect();
        renders
            .into_iter()
            .map(|render| render.join().unwrap())
            .collect()
    });
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    errors
}

#[test]
fn a_template_that_doubles_its_text_stops_within_the_memory_renderings_may_take() {
    // Each step doubles the text: 30 of them on 1 MB would be a petabyte.
    let mut source = String::from("{% set s0 = errors[0] %}");
    for step in 1..=30 {
        source.push_str(&format!(
            "{{% set s{step} = s{} ~ s{} %}}",
            step - 1,
            step - 1
        ));
    }
    source.push_str("{{ s30 | length }}");
    let template = BodyTemplate::compile(&source).unwrap();
    let (raw, event) = large_event(MIB);

    // One rendering: it stops at its fuel, having made at most what the fuel pays for (512 MiB
    // at most, 256 bytes per byte of event here).
    let errors = render_within(400 * MIB, &[&template], &raw, &event);
    assert!(errors[0].contains("fuel"), "{}", errors[0]);

    // Six at once, on events that give each the most fuel there is (512 MiB of text): together
    // they never hold more than the 1 GiB renderings share; the others wait their turn.
    let (raw, event) = large_event(3 * MIB);
    let errors = render_within(1024 * MIB + 200 * MIB, &[&template; 6], &raw, &event);
    for error in &errors {
        assert!(error.contains("fuel"), "{error}");
    }
}
