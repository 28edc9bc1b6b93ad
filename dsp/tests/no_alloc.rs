//! After construction, pushing samples and emitting frames must not touch the heap.
//! A counting global allocator counts the allocations of the test's own thread while it
//! streams: the test harness's main thread may allocate at any moment (a CI run caught it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use dsp::fixed::LogMelQ16;
use dsp::{FrontendConfig, LogMel, Resampler};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised: reading it never allocates, so the allocator may.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn streaming_never_allocates_after_construction() {
    let cfg = FrontendConfig::default();
    let f32_in: Vec<f32> = (0..48_000)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3)
        .collect();
    let i16_in: Vec<i16> = f32_in.iter().map(|x| (x * 32767.0) as i16).collect();
    let mut mel = LogMel::new(&cfg).unwrap();
    let mut fixed = LogMelQ16::new(&cfg).unwrap();
    let yamnet_cfg = FrontendConfig::yamnet();
    let mut yamnet = LogMel::new(&yamnet_cfg).unwrap();
    let mut yamnet_fixed = LogMelQ16::new(&yamnet_cfg).unwrap();
    let mut resampler = Resampler::new(48_000, 16_000).unwrap();
    let mut frames = 0usize;
    let mut checksum = 0.0f32;

    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for chunk in f32_in.chunks(333) {
        resampler.push(chunk, |out| {
            mel.push_f32(out, |f| {
                frames += 1;
                checksum += f[0];
            })
        });
    }
    resampler.finish(|out| mel.push_f32(out, |_| frames += 1));
    mel.finish(|_| frames += 1);
    for chunk in i16_in.chunks(160) {
        mel.push_i16(chunk, |_| frames += 1);
        fixed.push(chunk, |_| frames += 1);
        yamnet.push_i16(chunk, |_| frames += 1);
        yamnet_fixed.push(chunk, |_| frames += 1);
    }
    mel.finish(|_| frames += 1);
    fixed.finish(|_| frames += 1);
    yamnet.finish(|_| frames += 1);
    yamnet_fixed.finish(|_| frames += 1);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(false));

    // 1 s resampled to 16 kHz, then 3 s through the f32 and the integer extractor with the
    // default and the YAMNet (TensorFlow-framed) front end.
    assert_eq!(
        frames,
        cfg.frames_for(16_000) + 2 * cfg.frames_for(48_000) + 2 * yamnet_cfg.frames_for(48_000)
    );
    assert!(checksum.is_finite());
    assert_eq!(after - before, 0, "allocations while streaming");
}
