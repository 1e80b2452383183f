//! What a value holds on the heap, as the token cache's byte budget counts it: a leaf that the
//! verified claims and what they are bound to both weigh themselves with.

/// What an allocation of `requested` bytes takes from a general-purpose allocator: glibc's
/// malloc adds an 8-byte header, rounds up to 16 bytes and never hands out less than 32; 0 bytes
/// are no allocation at all.
pub fn allocation_bytes(requested: usize) -> usize {
    match requested {
        0 => 0,
        n => (n + 8).next_multiple_of(16).max(32),
    }
}
