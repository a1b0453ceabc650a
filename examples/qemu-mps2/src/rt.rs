//! Small replacements for the memory and 64-bit division routines of `compiler_builtins`.
//!
//! `compiler_builtins` defines `memcpy`, `memmove`, `memset`, their `__aeabi_*` variants and
//! `__udivmoddi4` as weak symbols tuned for speed: together about 3.5 KiB of flash in this
//! image (`memmove` alone is 1.5 KiB, the generic 64-bit division 0.9 KiB). The strong
//! definitions here replace them at link time with a few hundred bytes:
//!
//! - copies and fills move a word at a time, then the last 0-3 bytes one by one. ARMv7-M
//!   allows unaligned single-word `LDR`/`STR` on normal memory, so no alignment prologue is
//!   needed (the firmware never leaves `CCR.UNALIGN_TRP` set, and never copies to device
//!   memory with these);
//! - 64-bit division is a shift-and-subtract loop, one quotient bit per step. It serves the
//!   few divisions left (smoltcp's `Duration::total_millis` for the TCP round-trip time and
//!   [`Uart::dec`](crate::uart::Uart::dec)), none of them on a hot path.
//!
//! Nothing else in the firmware may rely on these being fast.

// memcpy(dst r0, src r1, n r2) -> dst and memset(dst r0, c r1, n r2) -> dst (C); the AEABI
// variants return nothing, and `__aeabi_memset`/`__aeabi_memclr` take (dst, n, c) / (dst, n).
// memmove copies forward unless the destination starts inside the source, then backward.
core::arch::global_asm!(
    r#"
    .syntax unified
    .thumb
    .section .text.smolecho_rt_mem,"ax",%progbits
    .balign 4

    .global memmove, __aeabi_memmove, __aeabi_memmove4, __aeabi_memmove8
    .type memmove, %function
    .type __aeabi_memmove, %function
    .type __aeabi_memmove4, %function
    .type __aeabi_memmove8, %function
    .thumb_func
memmove:
    .thumb_func
__aeabi_memmove:
    .thumb_func
__aeabi_memmove4:
    .thumb_func
__aeabi_memmove8:
    cmp     r0, r1
    bls     memcpy
    adds    r3, r1, r2
    cmp     r0, r3
    bhs     memcpy
    add     r12, r0, r2
1:  subs    r2, r2, #4
    blo     2f
    ldr     r1, [r3, #-4]!
    str     r1, [r12, #-4]!
    b       1b
2:  adds    r2, r2, #4
3:  cbz     r2, 4f
    ldrb    r1, [r3, #-1]!
    strb    r1, [r12, #-1]!
    subs    r2, r2, #1
    b       3b
4:  bx      lr

    .global memcpy, __aeabi_memcpy, __aeabi_memcpy4, __aeabi_memcpy8
    .type memcpy, %function
    .type __aeabi_memcpy, %function
    .type __aeabi_memcpy4, %function
    .type __aeabi_memcpy8, %function
    .thumb_func
memcpy:
    .thumb_func
__aeabi_memcpy:
    .thumb_func
__aeabi_memcpy4:
    .thumb_func
__aeabi_memcpy8:
    mov     r12, r0
1:  subs    r2, r2, #4
    blo     2f
    ldr     r3, [r1], #4
    str     r3, [r12], #4
    b       1b
2:  adds    r2, r2, #4
3:  cbz     r2, 4f
    ldrb    r3, [r1], #1
    strb    r3, [r12], #1
    subs    r2, r2, #1
    b       3b
4:  bx      lr

    .global __aeabi_memclr, __aeabi_memclr4, __aeabi_memclr8
    .global __aeabi_memset, __aeabi_memset4, __aeabi_memset8, memset
    .type __aeabi_memclr, %function
    .type __aeabi_memclr4, %function
    .type __aeabi_memclr8, %function
    .type __aeabi_memset, %function
    .type __aeabi_memset4, %function
    .type __aeabi_memset8, %function
    .type memset, %function
    .thumb_func
__aeabi_memclr:
    .thumb_func
__aeabi_memclr4:
    .thumb_func
__aeabi_memclr8:
    movs    r2, #0
    .thumb_func
__aeabi_memset:
    .thumb_func
__aeabi_memset4:
    .thumb_func
__aeabi_memset8:
    mov     r3, r1
    mov     r1, r2
    mov     r2, r3
    .thumb_func
memset:
    mov     r12, r0
    uxtb    r1, r1
    orr     r1, r1, r1, lsl #8
    orr     r1, r1, r1, lsl #16
1:  subs    r2, r2, #4
    blo     2f
    str     r1, [r12], #4
    b       1b
2:  adds    r2, r2, #4
3:  cbz     r2, 4f
    strb    r1, [r12], #1
    subs    r2, r2, #1
    b       3b
4:  bx      lr
"#
);

/// Unsigned 64-bit division with remainder, as `compiler_builtins`' `__aeabi_uldivmod`
/// calls it: returns `n / d` and stores `n % d` in `rem`. A zero `d` yields `u64::MAX` and
/// `n` (Rust checks for zero before it divides, so it never happens).
#[unsafe(no_mangle)]
pub extern "C" fn __udivmoddi4(n: u64, d: u64, rem: Option<&mut u64>) -> u64 {
    let (q, r) = udivmod(n, d);
    if let Some(rem) = rem {
        *rem = r;
    }
    q
}

/// Restoring division: one quotient bit per step, from the numerator's highest set bit.
fn udivmod(n: u64, d: u64) -> (u64, u64) {
    let skip = n.leading_zeros();
    let mut n = n.checked_shl(skip).unwrap_or(0);
    let mut q = 0u64;
    let mut r = 0u64;
    for _ in skip..64 {
        // `r < d` before the shift, so `r` fits 65 bits after it: the bit shifted out of `r`
        // means `r >= d` for sure.
        let carry = r >> 63 != 0;
        r = (r << 1) | (n >> 63);
        n <<= 1;
        q <<= 1;
        if carry || r >= d {
            r = r.wrapping_sub(d);
            q |= 1;
        }
    }
    (q, r)
}
