/* Architecture-independent part of the semihosting runtime: print, exit, fault exit. */
#include <stdint.h>

#include "semihost.h"

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

void semihost_write0(const char *text)
{
    semihost_call(SYS_WRITE0, text);
}

void semihost_exit(int code)
{
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    semihost_call(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}

void fault_handler(void)
{
    semihost_write0("ISEG_FAULT\n");
    semihost_exit(ISEG_EXIT_FAULT);
}
