//! The raw `proxy_get_header_map_pairs` import and the hand-over of the
//! buffer the host allocates for it: the only `unsafe` code in
//! filter_common, compiled for wasm32 only.
//!
//! Declared here rather than borrowed from the SDK because the SDK's wrapper
//! is the thing that panics (on a name that is not UTF-8, and on any status
//! but `Ok`). The wasm import is the same one the SDK declares: module `env`,
//! signature `(i32, i32, i32) -> i32`, so the linker merges the two.

#[link(wasm_import_module = "env")]
extern "C" {
    /// ABI v0.2.1: on `Ok` (0), `*return_map_data` points to
    /// `*return_map_size` bytes the host allocated with this module's
    /// `proxy_on_memory_allocate` and filled with the serialized map; the
    /// module owns them from then on. The map type and the status are plain
    /// integers here, not the SDK's enums, so a status this crate does not
    /// know cannot become an invalid enum value.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The ABI's `Ok` status.
const STATUS_OK: u32 = 0;

/// Asks the host for map `map_type` serialized; the status when not `Ok`.
/// An empty `Vec` when the host returned no data.
pub(super) fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers point to live, aligned, initialised locals
    // of the declared types for the whole call; the host writes a pointer
    // and a size through them and keeps neither (ABI v0.2.1).
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    if status != STATUS_OK {
        return Err(status);
    }
    if data.is_null() || size == 0 {
        // Nothing to take over. A zero-size allocation is the SDK
        // allocator's dangling pointer, which must not be freed.
        return Ok(Vec::new());
    }
    let slice = std::ptr::slice_from_raw_parts_mut(data, size);
    // SAFETY: on `Ok` with a non-null pointer the ABI hands the module
    // ownership of `size` bytes the host allocated by calling the exported
    // `proxy_on_memory_allocate(size)` and then filled. Every filter links
    // the proxy-wasm SDK, whose `proxy_on_memory_allocate` makes exactly one
    // `Box<[MaybeUninit<u8>]>` of length `size` with the global allocator and
    // returns `Box::into_raw`; the host initialised all `size` bytes. So this
    // `Box::from_raw` is the inverse of that `into_raw`: same pointer, same
    // length, same layout (align 1), owned once, and freed by the same
    // allocator when the Vec drops. The SDK's `get_map_bytes` relies on the
    // same contract (it rebuilds a `Vec` from the parts). The host does not
    // touch the buffer again: it is ours until dropped.
    let owned: Box<[u8]> = unsafe { Box::from_raw(slice) };
    Ok(owned.into_vec())
}
