/* Cortex-M startup: vector table, .data/.bss initialisation, semihosting via BKPT 0xAB.
 * The FPU is left disabled (CPACR reset value), so any FP instruction raises a fault that
 * fault_handler turns into exit code ISEG_EXIT_FAULT. Built for an integer-MVE or a float board (-DISEG_ENABLE_CP10_CP11),
 * the reset handler grants CP10/CP11 first: they gate MVE as well as the FPU, so on an MVE board only the static
 * proofs (no VFP/MVE-float instruction, no soft-float helper) show that the firmware is integer-only. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);
void reset_handler(void) __attribute__((noreturn));

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)__stack_top, /* initial stack pointer */
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    fault_handler, /* SecureFault */
    0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};

int semihost_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* The copy loops must stay loops: as memcpy/memset calls they would need a C library. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void reset_handler(void)
{
#if defined(ISEG_ENABLE_CP10_CP11)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10/CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0;
    }
    semihost_exit(main());
}
