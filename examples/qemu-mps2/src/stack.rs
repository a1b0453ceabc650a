//! The stack high-water mark. cortex-m-rt (feature `paint-stack`) fills the whole stack
//! region, from the end of the statics (`_stack_end`) to the top of RAM (`_stack_start`),
//! with `0xCCCC_CCCC` before `main`; the lowest word no longer holding the paint is the
//! deepest the stack has been.

use core::ptr;

const PAINT: u32 = 0xCCCC_CCCC;

unsafe extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// The stack region reserved by the linker, in bytes.
pub fn size() -> usize {
    let (bottom, top) = bounds();
    top - bottom
}

/// Bytes of stack used at the deepest point so far.
pub fn high_water() -> usize {
    let (bottom, top) = bounds();
    let mut at = bottom;
    while at < top {
        // SAFETY: `at` is a word-aligned address inside the stack region the linker reserved
        // (cortex-m-rt aligns `_stack_end` to 4 and `_stack_start` to 8). Reading it races with
        // nothing that matters: words below the stack pointer are not in use, and words in use
        // are read as plain values.
        let word = unsafe { ptr::read_volatile(at as *const u32) };
        if word != PAINT {
            break;
        }
        at += 4;
    }
    top - at
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        ptr::addr_of!(_stack_end) as usize,
        ptr::addr_of!(_stack_start) as usize,
    )
}
