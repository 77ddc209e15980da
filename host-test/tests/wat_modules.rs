//! Hand-written proxy-wasm modules (WAT) for what a Rust-SDK fixture cannot
//! do on purpose: bad guest pointers, `proc_exit`, runaway memory, WASI calls
//! std never makes. Each module answers with status `200 + <result code>`, so
//! the test reads the host call's result from the response status.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use host_test::{FailureKind, FilterSpec, Host, Request, VmLimits};

/// A module whose `proxy_on_request_headers` runs `body` (leaving an `i32`)
/// and replies with status 200 + that value.
fn module(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $sget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $sset (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x-key")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $reply (i32.add (i32.const 200) ({body}))
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#
    );
    wat::parse_str(wat).unwrap()
}

fn status_of(body: &str) -> u16 {
    status_with(Host::new().unwrap(), body)
}

fn status_with(mut host: Host, body: &str) -> u16 {
    host.add_filter(FilterSpec::bytes("wat", module(body)))
        .unwrap();
    let exchange = host.send(Request::get("/").header("x-key", "v"));
    assert!(exchange.failures.is_empty(), "{:?}", exchange.failures);
    exchange.status
}

#[test]
fn a_pointer_outside_guest_memory_is_invalid_memory_access() {
    assert_eq!(
        status_of("call $log (i32.const 2) (i32.const 0xFFFFFF00) (i32.const 1000)"),
        206
    );
    // Return pointers out of bounds too.
    assert_eq!(status_of("call $get_header (i32.const 0) (i32.const 64) (i32.const 5) (i32.const 0xFFFFFFF0) (i32.const 0)"), 206);
}

/// Writes key "x-key", reads it back, then writes it again with the stamp
/// it read: the result of that compare-and-swap.
const READ_THEN_CAS: &str = "block (result i32) \
    (drop (call $sset (i32.const 64) (i32.const 5) (i32.const 64) (i32.const 5) (i32.const 0))) \
    (drop (call $sget (i32.const 64) (i32.const 5) (i32.const 16) (i32.const 20) (i32.const 24))) \
    (call $sset (i32.const 64) (i32.const 5) (i32.const 64) (i32.const 5) (i32.load (i32.const 24)))";

#[test]
fn a_shared_data_hook_write_between_get_and_cas_makes_the_cas_fail() {
    assert_eq!(status_of(READ_THEN_CAS), 200);
    let mut host = Host::new().unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    host.set_shared_data_hook(Some(Box::new(move |read| {
        log.borrow_mut()
            .push((read.key.to_vec(), read.value.to_vec(), read.worker));
        Some(b"other".to_vec())
    })));
    // 8: CasMismatch.
    assert_eq!(status_with(host, READ_THEN_CAS), 208);
    assert_eq!(
        *seen.borrow(),
        vec![(b"x-key".to_vec(), b"x-key".to_vec(), 0)]
    );
}

#[test]
fn an_absent_header_is_not_found() {
    assert_eq!(status_of("call $get_header (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 16) (i32.const 20)"), 201);
}

#[test]
fn clock_res_get_and_sched_yield_succeed() {
    assert_eq!(
        status_of("call $clock_res (i32.const 1) (i32.const 16)"),
        200
    );
    assert_eq!(
        status_of("call $clock_res (i32.const 9) (i32.const 16)"),
        228,
        "EINVAL for an unknown clock"
    );
    assert_eq!(status_of("call $yield"), 200);
}

#[test]
fn there_are_no_preopened_directories() {
    assert_eq!(
        status_of("call $prestat (i32.const 3) (i32.const 16)"),
        208,
        "EBADF"
    );
}

#[test]
fn wasi_calls_outside_the_subset_answer_enosys_without_trapping() {
    let call = "call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 5) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 16)";
    assert_eq!(status_of(call), 252);
}

fn failure_of(body: &str, limits: VmLimits) -> host_test::CallbackFailure {
    let mut host = Host::new().unwrap();
    host.set_limits(limits);
    host.add_filter(FilterSpec::bytes("wat", module(body)))
        .unwrap();
    let exchange = host.send(Request::get("/"));
    assert_eq!(exchange.status, 503);
    exchange.failures.into_iter().next().unwrap()
}

#[test]
fn proc_exit_ends_the_vm_with_its_code() {
    let failure = failure_of(
        "block (result i32) (call $exit (i32.const 3)) (i32.const 0)",
        VmLimits::default(),
    );
    assert_eq!(failure.kind, FailureKind::Exit);
    assert!(failure.message.contains("proc_exit(3)"), "{failure}");
}

#[test]
fn memory_growth_past_the_limit_is_reported() {
    let grow = "block (result i32) (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 0)";
    let failure = failure_of(
        grow,
        VmLimits {
            memory_bytes: 4 << 20,
            ..VmLimits::default()
        },
    );
    assert_eq!(failure.kind, FailureKind::Memory, "{failure}");
    assert!(failure.to_string().contains("memory limit"), "{failure}");
}

#[test]
fn an_out_of_bounds_guest_access_is_a_trap() {
    let failure = failure_of("i32.load (i32.const 0x7FFFFFF0)", VmLimits::default());
    assert_eq!(failure.kind, FailureKind::Trap);
    assert!(failure.message.contains("out of bounds"), "{failure}");
}

#[test]
fn a_module_without_memory_is_refused() {
    let bytes = wat::parse_str(r#"(module (func (export "proxy_abi_version_0_2_1")))"#).unwrap();
    let err = Host::new()
        .unwrap()
        .add_filter(FilterSpec::bytes("bare", bytes))
        .unwrap_err();
    assert!(err.to_string().contains("must export `memory`"), "{err}");
}
