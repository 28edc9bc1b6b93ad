#![no_main]
//! hark::fuzz::target("phrase") under libFuzzer.

use std::cell::RefCell;

thread_local! {
    static TARGET: RefCell<hark::fuzz::Target> = RefCell::new(hark::fuzz::target("phrase"));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.with(|t| t.borrow_mut()(data)));
