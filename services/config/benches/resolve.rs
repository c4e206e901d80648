//! `Resolve` in process: the dial-plan look-up every outgoing call makes.

use criterion::{Criterion, criterion_group, criterion_main};
use doorphone_interfaces::config::document::{AccountChoice, DialPlan, DialRule};
use std::hint::black_box;

fn rules(n: u32) -> Vec<DialRule> {
    (1..=n)
        .map(|i| DialRule {
            id: i,
            name: format!("Rule {i}"),
            prefix: format!("8{i}"),
            account: AccountChoice::Auto,
            replace: (0..5)
                .map(|t| format!("sip:{i}{t}@pbx.example.com"))
                .collect(),
        })
        .collect()
}

fn resolve(c: &mut Criterion) {
    let plan = DialPlan::new(&rules(500));
    c.bench_function("resolve a prefix among 500 rules", |b| {
        b.iter(|| plan.resolve(black_box("8250")))
    });
    c.bench_function("resolve a number with no rule", |b| {
        b.iter(|| plan.resolve(black_box("12345")))
    });
}

criterion_group!(benches, resolve);
criterion_main!(benches);
