/* Semihosting (Arm and RISC-V share the operation numbers) and the exit codes of this project's programs. */
#ifndef ISEG_SEMIHOST_H
#define ISEG_SEMIHOST_H

#define ISEG_EXIT_OK 0
#define ISEG_EXIT_MISMATCH 1 /* a self-check in the program failed */
#define ISEG_EXIT_FAULT 70   /* hard fault / illegal instruction trap (e.g. an FP instruction) */

/* One semihosting call: operation number and parameter block; arch-specific (startup file). */
int semihost_call(int op, const void *arg);

void semihost_write0(const char *text);
void semihost_exit(int code) __attribute__((noreturn));
void fault_handler(void) __attribute__((noreturn));

#endif
