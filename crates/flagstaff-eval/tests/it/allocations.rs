//! Proves the hot path allocates nothing: a counting global allocator (this test binary only)
//! counts heap allocations made by the current thread while a measurement is running.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Context, FlagData};

#[path = "../../benches/scenarios/mod.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod scenarios;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: every call forwards to the system allocator unchanged; the only addition is bumping a
// const-initialised thread-local counter, which itself never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that silently counts nothing.
    let n = allocations(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(n, 1);
}

#[test]
fn evaluation_allocates_nothing_in_every_benchmark_scenario() {
    for scenario in scenarios::scenarios() {
        let data = FlagData::from_json(scenario.data.clone()).unwrap();
        let snapshot = Snapshot::compile(&data);
        let context = Context::from_json(&scenario.context).unwrap();
        let id = snapshot.flag_id(scenario.flag).unwrap();
        // Warm up: the regex engine fills a per-thread cache on first use.
        let expected = snapshot.evaluate_id(id, &context);
        assert_eq!(
            serde_json::to_value(&expected.reason).unwrap(),
            scenario.reason,
            "{}",
            scenario.name
        );
        let n = allocations(|| {
            for _ in 0..100 {
                let detail = snapshot.evaluate_id(id, &context);
                assert_eq!(std::hint::black_box(&detail), &expected);
            }
        });
        assert_eq!(
            n, 0,
            "{}: {n} allocations in 100 evaluations",
            scenario.name
        );
        // Looking the flag up by key costs no allocation either.
        let n = allocations(|| {
            std::hint::black_box(snapshot.evaluate(scenario.flag, &context));
        });
        assert_eq!(n, 0, "{}: lookup by key allocated", scenario.name);
    }
}
