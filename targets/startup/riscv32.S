/* RV32 bare-metal startup: stack, trap vector, .data/.bss initialisation, semihosting.
 * mstatus.FS stays off (and the QEMU CPU has no F/D), so an FP instruction traps into
 * fault_handler, which exits with ISEG_EXIT_FAULT. */
    .section .text.start, "ax"
    .global _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    .option push
    .option arch, +zicsr
    la t0, trap_entry
    csrw mtvec, t0
    .option pop
    la t0, __data_load
    la t1, __data_start
    la t2, __data_end
1:  bgeu t1, t2, 2f
    lw t3, 0(t0)
    sw t3, 0(t1)
    addi t0, t0, 4
    addi t1, t1, 4
    j 1b
2:  la t1, __bss_start
    la t2, __bss_end
3:  bgeu t1, t2, 4f
    sw zero, 0(t1)
    addi t1, t1, 4
    j 3b
4:  call main
    call semihost_exit

    .balign 4
trap_entry:
    la sp, __stack_top
    call fault_handler

    /* The semihosting trap sequence must be uncompressed and within one page. */
    .text
    .global semihost_call
    .balign 16
semihost_call:
    .option push
    .option norvc
    slli zero, zero, 0x1f
    ebreak
    srai zero, zero, 7
    .option pop
    ret
